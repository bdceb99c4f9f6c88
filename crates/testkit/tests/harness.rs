//! testkit's own tests: the shared and persistent couch-peer servers, and the fault proxy.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use testkit::{http_request, percent_encode, unique_db, CouchServer, TcpProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Generous upper bound for anything we wait on.
const WAIT: Duration = Duration::from_secs(10);

/// `server`'s URL with its credentials (if any) for `http_request`.
fn base(server: &CouchServer) -> String {
    server.url_with_credentials()
}

fn call(method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    http_request(method, url, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

#[test]
fn shared_server_keeps_slash_db_names_verbatim() {
    let server = CouchServer::shared();
    assert!(std::ptr::eq(server, CouchServer::shared()), "one server per test binary");
    assert!(server.url().starts_with("http://"), "{}", server.url());
    assert!(!server.url().ends_with('/'));
    let base = base(server);

    let (status, body) = call("GET", &format!("{base}/"), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""couchdb":"Welcome""#), "{body}");

    let numbers = format!("{}/+1415", unique_db("numbers"));
    let flat = numbers.replace('/', "");
    for name in [&numbers, &flat] {
        let (status, body) = call("PUT", &format!("{base}/{}", percent_encode(name)), None);
        assert_eq!(status, 201, "PUT {name}: {body}");
    }
    let (status, body) =
        call("PUT", &format!("{base}/{}/doc1", percent_encode(&numbers)), Some(r#"{"n":1}"#));
    assert_eq!(status, 201, "{body}");

    let (status, all) = call("GET", &format!("{base}/_all_dbs"), None);
    assert_eq!(status, 200, "{all}");
    assert!(all.contains(&format!("\"{numbers}\"")), "{numbers} not listed verbatim in {all}");
    assert!(all.contains(&format!("\"{flat}\"")), "{flat} not listed in {all}");

    let (_, info) = call("GET", &format!("{base}/{}", percent_encode(&numbers)), None);
    assert!(info.contains(&format!("\"db_name\":\"{numbers}\"")), "{info}");
    assert!(info.contains("\"doc_count\":1"), "{info}");
    let (_, flat_info) = call("GET", &format!("{base}/{}", percent_encode(&flat)), None);
    assert!(flat_info.contains("\"doc_count\":0"), "the two names are distinct dbs: {flat_info}");

    for name in [&numbers, &flat] {
        let (status, body) = call("DELETE", &format!("{base}/{}", percent_encode(name)), None);
        assert_eq!(status, 200, "DELETE {name}: {body}");
    }
    let (status, body) = call("DELETE", &format!("{base}/{}", percent_encode(&numbers)), None);
    assert_eq!(status, 404, "deleting a missing db: {body}");
}

#[test]
fn persistent_server_keeps_data_across_kill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut server) = CouchServer::start_persistent(dir.path()) else {
        eprintln!("COUCHDB_URL is set: an external server cannot be killed, test skipped");
        return;
    };
    assert!(!server.is_external());
    assert_eq!(server.credentials(), None);
    let url = server.url().to_string();
    let db = format!("account/ab/cd/{}", unique_db("ef"));
    let (status, body) = call("PUT", &format!("{url}/{}", percent_encode(&db)), None);
    assert_eq!(status, 201, "{body}");
    let (status, body) =
        call("PUT", &format!("{url}/{}/kept", percent_encode(&db)), Some(r#"{"v":"before"}"#));
    assert_eq!(status, 201, "{body}");
    assert!(dir.path().join("account/ab/cd").is_dir(), "leveldb keeps slash names as directories");

    server.kill();
    let err = http_request("GET", &format!("{url}/_up"), None).expect_err("the server is dead");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    server.kill(); // killing twice is harmless

    server.restart();
    assert_eq!(server.url(), url, "same port after restart");
    let (status, body) = call("GET", &format!("{url}/{}/kept", percent_encode(&db)), None);
    assert_eq!(status, 200, "{body}\n{}", server.server_log());
    assert!(body.contains(r#""v":"before""#), "{body}");
    let (_, all) = call("GET", &format!("{url}/_all_dbs"), None);
    assert!(all.contains(&format!("\"{db}\"")), "{all}");

    server.restart(); // restarting a running server kills it first
    assert_eq!(call("GET", &format!("{url}/_up"), None).0, 200);
}

#[test]
fn persistent_server_uses_admins_from_config_json() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), r#"{"admins":{"admin":"s3cret"}}"#).unwrap();
    let Some(server) = CouchServer::start_persistent(dir.path()) else {
        eprintln!("COUCHDB_URL is set: test skipped");
        return;
    };
    let authed = server.url().replacen("://", "://admin:s3cret@", 1);
    let (status, body) = call("GET", &format!("{authed}/_session"), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""name":"admin""#), "{body}");
    let wrong = server.url().replacen("://", "://admin:wrong@", 1);
    assert_eq!(call("GET", &format!("{wrong}/_all_dbs"), None).0, 401);
}

/// A target that echoes every byte back, so both proxy directions are exercised.
async fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 || socket.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn connect(proxy: &TcpProxy) -> tokio::net::TcpStream {
    let addr = proxy.url().trim_start_matches("http://").to_string();
    tokio::net::TcpStream::connect(addr).await.unwrap()
}

async fn round_trip(stream: &mut tokio::net::TcpStream, msg: &[u8]) -> Vec<u8> {
    stream.write_all(msg).await.unwrap();
    let mut got = vec![0u8; msg.len()];
    tokio::time::timeout(WAIT, stream.read_exact(&mut got)).await.expect("echo in time").unwrap();
    got
}

/// Reads until EOF or a reset, within WAIT: the proxy closed the connection.
async fn closed(stream: &mut tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

#[tokio::test]
async fn proxy_forwards_http_to_the_couch_server() {
    let server = CouchServer::shared();
    let proxy = TcpProxy::start(server.url()).await;
    assert!(proxy.url().starts_with("http://127.0.0.1:"));
    assert_ne!(proxy.url(), server.url());
    let up = format!("{}/_up", proxy.url());
    let (status, body) = tokio::task::spawn_blocking(move || call("GET", &up, None)).await.unwrap();
    if server.is_external() {
        assert!(status == 200 || status == 401, "{status} {body}");
    } else {
        assert_eq!((status, body.trim()), (200, r#"{"status":"ok","seeds":{}}"#));
    }
}

#[tokio::test]
async fn proxy_stall_holds_bytes_until_resume() {
    let proxy = TcpProxy::start(&echo_server().await).await;
    let mut stream = connect(&proxy).await;
    assert_eq!(round_trip(&mut stream, b"hello").await, b"hello");

    proxy.stall();
    stream.write_all(b"held").await.unwrap();
    let mut buf = [0u8; 4];
    // Nothing may come back while stalled; the connection stays open meanwhile.
    let quiet = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await;
    assert!(quiet.is_err(), "bytes crossed a stalled proxy: {quiet:?}");
    assert_eq!(proxy.open_connections(), 1);

    proxy.resume();
    tokio::time::timeout(WAIT, stream.read_exact(&mut buf))
        .await
        .expect("delivered after resume")
        .unwrap();
    assert_eq!(&buf, b"held");
    assert_eq!(round_trip(&mut stream, b"again").await, b"again");
}

#[tokio::test]
async fn proxy_cut_all_closes_open_connections_but_accepts_new_ones() {
    let proxy = TcpProxy::start(&echo_server().await).await;
    let mut first = connect(&proxy).await;
    let mut second = connect(&proxy).await;
    assert_eq!(round_trip(&mut first, b"a").await, b"a");
    assert_eq!(round_trip(&mut second, b"b").await, b"b");

    proxy.cut_all();
    assert!(closed(&mut first).await, "first connection still open after cut_all");
    assert!(closed(&mut second).await, "second connection still open after cut_all");

    let mut fresh = connect(&proxy).await;
    assert_eq!(round_trip(&mut fresh, b"new").await, b"new");
}

#[tokio::test]
async fn proxy_refuse_closes_new_connections_while_on() {
    let proxy = TcpProxy::start(&echo_server().await).await;
    let mut before = connect(&proxy).await;
    assert_eq!(round_trip(&mut before, b"x").await, b"x");

    proxy.refuse(true);
    let mut refused = connect(&proxy).await;
    let _ = refused.write_all(b"anyone?").await;
    assert!(closed(&mut refused).await, "a new connection was served while refusing");
    assert_eq!(round_trip(&mut before, b"y").await, b"y", "open connections are not touched");

    proxy.refuse(false);
    let mut after = connect(&proxy).await;
    assert_eq!(round_trip(&mut after, b"z").await, b"z");
}

#[test]
fn proxy_works_from_a_blocking_client_with_a_couch_feed() {
    // A continuous _changes feed through the proxy is cut by cut_all (what the follower sees).
    let server = CouchServer::shared();
    if server.is_external() {
        eprintln!("COUCHDB_URL is set: feed test runs against couch-peer only, skipped");
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let proxy = runtime.block_on(TcpProxy::start(server.url()));
    let db = unique_db("proxyfeed");
    assert_eq!(call("PUT", &format!("{}/{db}", server.url()), None).0, 201);
    let addr = proxy.url().trim_start_matches("http://").to_string();
    let mut feed = TcpStream::connect(addr).unwrap();
    feed.set_read_timeout(Some(WAIT)).unwrap();
    write!(feed, "GET /{db}/_changes?feed=continuous&heartbeat=200 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 256];
    let n = feed.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "headers at once");
    proxy.cut_all();
    let mut rest = Vec::new();
    // EOF or reset, not a read timeout
    match feed.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) => assert!(
            !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "feed not cut: {e}"
        ),
    }
    assert_eq!(call("DELETE", &format!("{}/{db}", server.url()), None).0, 200);
}

//! The daemon's HTTP/1.1 server: hyper's connection builder driven directly (rather than
//! `axum::serve`) so that a connection is bounded at every step:
//! - a request's headers must arrive within `api.header_read_timeout`, counted from the moment
//!   the server waits for them: for a new connection, and between requests of a keep-alive
//!   connection, so the same setting is the idle timeout. A slow or silent client is
//!   disconnected (slowloris);
//! - at most `api.max_connections` connections are served at once. One more is **refused**, not
//!   queued: it is answered `503 too_many_connections` (with `Retry-After: 1`) and closed, so a
//!   client learns at once that the server is full rather than hanging in the listen queue;
//! - hyper's own replies to a request it cannot parse (400, a request line or headers longer
//!   than its buffers: 414, 431), written before any handler runs, get the Crossbar JSON error
//!   body like every other error ([`JsonErrorReplies`]).
//!
//! Body limits and the body read timeout are the API's (`api::limits`). Shutdown: stop
//! accepting, close idle connections, let the others finish their request.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::api::envelope::error_body;
use crate::api::error::ApiError;

/// How many refused connections may be waiting for their 503 at once; beyond that a refused
/// connection is closed without a reply.
const REFUSALS_AT_ONCE: usize = 64;

/// Lingering close: after its last reply the server stops sending, then reads and discards what
/// the client still sends (a body it did not read, after a 413 say) for at most this long...
const LINGER_FOR: Duration = Duration::from_secs(1);
/// ...and at most this much, so that closing does not reset the connection before the client
/// has read the reply.
const LINGER_BYTES: usize = 1024 * 1024;

/// The connection limits of [`serve`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    /// See `api.header_read_timeout`.
    pub(crate) header_read_timeout: Duration,
    /// See `api.max_connections`.
    pub(crate) max_connections: usize,
}

/// Serves `app` on `listener` until `stop` resolves, then stops accepting and waits for the open
/// connections to finish (idle ones are closed at once).
///
/// # Errors
/// None so far: accept errors are logged and the loop goes on.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    stop: impl Future<Output = ()>,
) -> io::Result<()> {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let mut refuser = builder.clone();
    refuser.keep_alive(false);
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_failed(&err).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        match open.clone().try_acquire_owned() {
            Ok(permit) => {
                let app = app.clone();
                let service = hyper::service::service_fn(move |mut req| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    tower::Service::call(&mut app.clone(), req)
                });
                let conn = builder.serve_connection(io(stream), service);
                let conn = graceful.watch(conn);
                metrics::gauge!("switchboard_http_connections_open").increment(1.0);
                tokio::spawn(async move {
                    if let Err(err) = conn.await {
                        tracing::debug!(%peer, error = %err, "connection ended with an error");
                    }
                    metrics::gauge!("switchboard_http_connections_open").decrement(1.0);
                    drop(permit);
                });
            }
            Err(_) => {
                metrics::counter!("switchboard_http_connections_refused_total").increment(1);
                let Ok(permit) = refusing.clone().try_acquire_owned() else {
                    continue;
                };
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(too_many_connections())
                });
                let conn = refuser.serve_connection(io(stream), service);
                let deadline = limits.header_read_timeout + Duration::from_secs(5);
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(deadline, conn).await;
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

fn io(stream: TcpStream) -> TokioIo<JsonErrorReplies<TcpStream>> {
    TokioIo::new(JsonErrorReplies::new(stream))
}

/// An accept error: per-connection ones are skipped; others (out of file descriptors) are
/// logged and the loop pauses, as `axum::serve` does.
async fn accept_failed(err: &io::Error) {
    use io::ErrorKind as K;
    if matches!(err.kind(), K::ConnectionAborted | K::ConnectionRefused | K::ConnectionReset) {
        return;
    }
    tracing::error!(error = %err, "cannot accept a connection");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The reply of a connection over `api.max_connections` (counted by
/// `switchboard_http_connections_refused_total`, not logged: a flood must not flood the log).
fn too_many_connections() -> Response {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (status, message, data) = ApiError::Custom {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "too_many_connections".into(),
        data: json!({"message": "the server is serving as many connections as it may (api.max_connections); retry"}),
    }
    .parts();
    let mut response =
        (status, axum::Json(error_body(status, &message, data, &id))).into_response();
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(crate::api::envelope::REQUEST_ID_HEADER, value);
    }
    response
}

/// A connection's socket that gives hyper's own error replies a Crossbar JSON body.
///
/// hyper answers a request it cannot parse by itself, before any service runs, with a bare
/// status line and `content-length: 0`, then closes. Every reply the API makes for a client
/// error carries a JSON body, so a 4xx head with `content-length: 0` is one of hyper's: it is
/// rewritten into the same head with the error body. It reports no vectored writes, so hyper
/// hands it each reply head in one buffer. Its shutdown is a lingering close ([`LINGER_FOR`]).
pub(crate) struct JsonErrorReplies<T> {
    inner: T,
    pending: Vec<u8>,
    written: usize,
    linger: Option<Linger>,
}

/// The state of a lingering close: the write side is shut, input is being discarded.
struct Linger {
    deadline: Pin<Box<tokio::time::Sleep>>,
    left: usize,
}

impl<T> JsonErrorReplies<T> {
    pub(crate) fn new(inner: T) -> Self {
        JsonErrorReplies { inner, pending: Vec::new(), written: 0, linger: None }
    }
}

impl<T: AsyncWrite + Unpin> JsonErrorReplies<T> {
    /// Writes what a rewrite left pending.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonErrorReplies<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for JsonErrorReplies<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.drain(cx))?;
        if let Some(rewritten) = rewrite_error_reply(buf) {
            this.pending = rewritten;
            this.written = 0;
            // Taken whole; what the socket does not take now is written by the next call or
            // the flush.
            if let Poll::Ready(Err(err)) = this.drain(cx) {
                return Poll::Ready(Err(err));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.linger.is_none() {
            ready!(this.drain(cx))?;
            ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.linger = Some(Linger {
                deadline: Box::pin(tokio::time::sleep(LINGER_FOR)),
                left: LINGER_BYTES,
            });
        }
        let Some(linger) = this.linger.as_mut() else { return Poll::Ready(Ok(())) };
        let mut scratch = [0u8; 8192];
        loop {
            if linger.left == 0 || linger.deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => linger.left = linger.left.saturating_sub(buf.filled().len()),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// hyper's bodiless error reply in `buf` (`HTTP/1.1 4xx …`, `content-length: 0`, nothing after
/// the head, no request id or content type) with the Crossbar error body added; `None` for
/// anything else.
fn rewrite_error_reply(buf: &[u8]) -> Option<Vec<u8>> {
    let head = buf.strip_prefix(b"HTTP/1.1 4")?;
    if !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let text = std::str::from_utf8(buf).ok()?;
    let mut lines = text.trim_end_matches("\r\n").split("\r\n");
    let status_line = lines.next()?;
    let code = std::str::from_utf8(head.get(..2)?).ok()?;
    let status = StatusCode::from_u16(400 + code.parse::<u16>().ok()?).ok()?;
    let headers: Vec<&str> = lines.collect();
    let is_length = |h: &str| h.to_ascii_lowercase().starts_with("content-length:");
    let length = headers.iter().find(|h| is_length(h))?;
    if length.split_once(':').map(|(_, v)| v.trim()) != Some("0") {
        return None;
    }
    // The router's own replies carry a request id (and a content type): an empty body there is
    // meant (the text form's 404 of a number no carrier takes), only hyper's replies have none.
    let ours = |h: &&str| {
        let h = h.to_ascii_lowercase();
        h.starts_with("x-request-id:") || h.starts_with("content-type:")
    };
    if headers.iter().any(ours) {
        return None;
    }
    let error = match status {
        StatusCode::URI_TOO_LONG => {
            ApiError::UriTooLong("the request line is longer than the server reads".into())
        }
        StatusCode::BAD_REQUEST => ApiError::BadRequest("the request is not valid HTTP/1.1".into()),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ApiError::Custom {
            status,
            message: "request_header_fields_too_large".into(),
            data: json!({"message": "the request's headers are larger than the server reads"}),
        },
        other => {
            let reason = other.canonical_reason().unwrap_or("client error").to_lowercase();
            ApiError::Custom {
                status: other,
                message: reason.replace(' ', "_"),
                data: json!({ "message": reason }),
            }
        }
    };
    let (status, message, data) = error.parts();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let body = error_body(status, &message, data, &id).to_string();
    let mut out = String::with_capacity(buf.len() + body.len() + 128);
    out.push_str(status_line);
    out.push_str("\r\n");
    for h in headers.iter().filter(|h| !is_length(h)) {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("content-type: application/json\r\n");
    out.push_str(&format!("content-length: {}\r\n", body.len()));
    out.push_str(&format!("x-request-id: {id}\r\n\r\n"));
    out.push_str(&body);
    Some(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn hypers_bodiless_error_replies_get_the_json_body() {
        for (head, code, message) in [
            (
                "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n",
                400,
                "bad_request",
            ),
            ("HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n", 414, "uri_too_long"),
            (
                "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n",
                431,
                "request_header_fields_too_large",
            ),
        ] {
            let out = String::from_utf8(rewrite_error_reply(head.as_bytes()).unwrap()).unwrap();
            let (head_out, body) = out.split_once("\r\n\r\n").unwrap();
            assert!(head_out.starts_with(&format!("HTTP/1.1 {code} ")), "{out}");
            assert!(head_out.contains(&format!("content-length: {}", body.len())), "{out}");
            assert!(!head_out.contains("content-length: 0"), "{out}");
            let body: Value = serde_json::from_str(body).unwrap();
            assert_eq!(body["error"], code.to_string());
            assert_eq!(body["message"], message);
            assert_eq!(body["status"], "error");
        }
        // Replies with a body, successes and partial buffers pass untouched.
        for other in [
            "HTTP/1.1 404 Not Found\r\ncontent-length: 12\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            // The router's own empty replies (the text 404 of a number no carrier takes).
            "HTTP/1.1 404 Not Found\r\ncontent-type: text/plain; charset=utf-8\r\n\
             x-request-id: 1\r\ncontent-length: 0\r\n\r\n",
            "{\"data\": {}}",
        ] {
            assert!(rewrite_error_reply(other.as_bytes()).is_none(), "{other}");
        }
    }

    /// A real hyper connection: a malformed request gets the JSON body, a good one is served.
    #[tokio::test]
    async fn a_malformed_request_is_answered_with_json_by_the_server() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/ok", axum::routing::get(|| async { "fine" }));
        let limits = ConnLimits { header_read_timeout: Duration::from_secs(5), max_connections: 4 };
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(serve(listener, app, limits, stop.clone().cancelled_owned()));
        let exchange = |request: &'static [u8]| async move {
            let mut conn = TcpStream::connect(addr).await.unwrap();
            conn.write_all(request).await.unwrap();
            let mut reply = Vec::new();
            conn.read_to_end(&mut reply).await.unwrap();
            String::from_utf8(reply).unwrap()
        };
        let bad = exchange(b"GET /ok HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n").await;
        assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
        let body: Value = serde_json::from_str(bad.split_once("\r\n\r\n").unwrap().1).unwrap();
        assert_eq!(body["message"], "bad_request");
        let good = exchange(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        assert!(good.starts_with("HTTP/1.1 200") && good.ends_with("fine"), "{good}");
        // A reply that leaves a large body unread (the route takes none), then a close: the
        // client that sends its whole body first still reads the whole reply.
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let body = vec![b'x'; 512 * 1024];
        let head = format!(
            "POST /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let _ = conn.write_all(&body).await;
        let mut reply = Vec::new();
        conn.read_to_end(&mut reply).await.unwrap();
        assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 405"), "{reply:?}");
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}

//! The Crossbar response envelope (`{"data", "status", "request_id", "revision", "auth_token",
//! …}`) and the request id every response carries: set once per request by the request layer
//! (`ops::request_layer`), read here by every envelope, success or error.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use md5::{Digest, Md5};
use serde_json::{json, Map, Value};

/// The header carrying the request id (Kazoo's `X-Request-ID`).
pub(crate) const REQUEST_ID_HEADER: &str = "x-request-id";
/// The header carrying the auth token.
pub(crate) const AUTH_TOKEN_HEADER: &str = "x-auth-token";

/// The request id: the client's `X-Request-ID` when it sent a sane one, else a fresh one.
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub(crate) String);

impl RequestId {
    /// Takes the client's id (printable ASCII, at most 128 bytes) or makes a new one.
    pub(crate) fn from_headers(headers: &HeaderMap) -> RequestId {
        let given = headers
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()));
        RequestId(match given {
            Some(id) => id.to_owned(),
            None => uuid::Uuid::new_v4().simple().to_string(),
        })
    }
}

tokio::task_local! {
    /// The id of the request being served, set by the request layer around everything that
    /// serves the request (limits, router, handler), so every reply echoes it.
    pub(crate) static CURRENT_REQUEST_ID: String;
}

/// The current request's id, or a fresh one outside a request (a handler called by a test).
pub(crate) fn current_request_id() -> String {
    CURRENT_REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| uuid::Uuid::new_v4().simple().to_string())
}

/// A successful Crossbar reply: `data` plus the envelope fields.
#[derive(Debug)]
pub(crate) struct Envelope {
    status: StatusCode,
    data: Value,
    revision: Option<String>,
    auth_token: Option<String>,
}

impl Envelope {
    /// 200 with `data`; `revision` is the document's `_rev` when `data` is one document, else a
    /// digest of `data` (Kazoo's etag for listings).
    pub(crate) fn ok(data: Value) -> Envelope {
        Envelope { status: StatusCode::OK, data, revision: None, auth_token: None }
    }

    /// 201 with `data` (a created document).
    pub(crate) fn created(data: Value) -> Envelope {
        Envelope { status: StatusCode::CREATED, ..Envelope::ok(data) }
    }

    /// Another success status.
    pub(crate) fn with_status(mut self, status: StatusCode) -> Envelope {
        self.status = status;
        self
    }

    /// Echo an auth token (set by `PUT /v2/api_auth`).
    pub(crate) fn with_auth_token(mut self, token: String) -> Envelope {
        self.auth_token = Some(token);
        self
    }

    /// The `revision` to report (a document's `_rev`); `None` keeps the digest of `data`.
    pub(crate) fn with_revision(mut self, rev: Option<&str>) -> Envelope {
        self.revision = rev.map(str::to_owned);
        self
    }
}

/// The `revision` of a reply: the `_rev` of a single document, else an md5 of the data.
fn revision_of(data: &Value) -> String {
    if let Some(rev) = data.get("_rev").or_else(|| data.get("rev")).and_then(Value::as_str) {
        return rev.to_owned();
    }
    let mut hasher = Md5::new();
    hasher.update(data.to_string().as_bytes());
    hex::encode(hasher.finalize())
}

impl IntoResponse for Envelope {
    fn into_response(self) -> Response {
        let revision = self.revision.unwrap_or_else(|| revision_of(&self.data));
        let request_id = current_request_id();
        let mut body = Map::new();
        body.insert("auth_token".into(), Value::String(self.auth_token.unwrap_or_default()));
        body.insert("data".into(), self.data);
        body.insert("request_id".into(), Value::String(request_id));
        body.insert("revision".into(), Value::String(revision.clone()));
        body.insert("status".into(), Value::String("success".into()));
        body.insert("timestamp".into(), Value::String(timestamp()));
        body.insert("version".into(), Value::String(env!("CARGO_PKG_VERSION").into()));
        let mut response = (self.status, axum::Json(Value::Object(body))).into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("\"{revision}\"")) {
            response.headers_mut().insert(axum::http::header::ETAG, v);
        }
        response
    }
}

/// [`Envelope::ok`] for data that `write_data` appends as compact JSON (a route answer written
/// from its prepared fragments): the same reply, byte for byte, without building a `Value` of
/// the data or serialising it twice. The data is written in place into the reply's body (room
/// for about `data_len` bytes is made first), so the body is neither copied nor regrown.
pub(crate) fn ok_rendered(data_len: usize, write_data: impl FnOnce(&mut String)) -> Response {
    const HEAD: &str = "{\"auth_token\":\"\",\"data\":";
    let mut body = String::with_capacity(HEAD.len() + data_len + 256);
    body.push_str(HEAD);
    write_data(&mut body);
    let mut hasher = Md5::new();
    hasher.update(&body.as_bytes()[HEAD.len()..]);
    let revision = hex::encode(hasher.finalize());
    let request_id = current_request_id();
    let string = |text: &str| Value::String(text.to_owned()).to_string();
    body.push_str(",\"request_id\":");
    body.push_str(&string(&request_id));
    body.push_str(",\"revision\":\"");
    body.push_str(&revision);
    body.push_str("\",\"status\":\"success\",\"timestamp\":");
    body.push_str(&string(&timestamp()));
    body.push_str(",\"version\":");
    body.push_str(&string(env!("CARGO_PKG_VERSION")));
    body.push('}');
    let mut response = (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{revision}\"")) {
        response.headers_mut().insert(axum::http::header::ETAG, v);
    }
    response
}

/// The error envelope: `{"data", "error": "<code>", "message", "status": "error", …}`.
pub(crate) fn error_body(
    status: StatusCode,
    message: &str,
    data: Value,
    request_id: &str,
) -> Value {
    json!({
        "auth_token": "",
        "data": data,
        "error": status.as_u16().to_string(),
        "message": message,
        "request_id": request_id,
        "status": "error",
        "timestamp": timestamp(),
        "version": env!("CARGO_PKG_VERSION"),
    })
}

/// ISO 8601 UTC time of now, as Crossbar's envelope carries it.
fn timestamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_is_the_rev_or_a_digest() {
        assert_eq!(revision_of(&json!({"_rev": "2-ab"})), "2-ab");
        let a = revision_of(&json!([1, 2]));
        assert_eq!(a.len(), 32);
        assert_ne!(a, revision_of(&json!([2, 1])));
    }

    /// A reply of prepared JSON is the reply `Envelope::ok` gives for the same data, byte for
    /// byte (the request id and the time apart), headers included.
    #[tokio::test]
    async fn a_rendered_reply_is_the_ok_reply() {
        let data = json!({"number": "+1\"415", "classification": null,
            "endpoints": [{"Route": "sip:a@b", "Weight": 3}]});
        let body = |response: Response| async move {
            let headers = response.headers().clone();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
            let text = String::from_utf8(bytes.to_vec()).unwrap();
            let parsed: Value = serde_json::from_str(&text).unwrap();
            let id = parsed["request_id"].as_str().unwrap().to_owned();
            let time = parsed["timestamp"].as_str().unwrap().to_owned();
            let text = text.replace(&id, "ID").replace(&time, "TIME");
            (
                text,
                headers.get(axum::http::header::ETAG).cloned(),
                headers.get("content-type").cloned(),
            )
        };
        let (expected, etag, kind) = body(Envelope::ok(data.clone()).into_response()).await;
        let (got, got_etag, got_kind) =
            body(ok_rendered(0, |out| out.push_str(&data.to_string()))).await;
        assert_eq!(got, expected);
        assert_eq!((got_etag, got_kind), (etag, kind));
    }
}

//! The CouchDB backend: [`DocStore`] over HTTP, on couch_rs's client and connection pool.
//!
//! couch_rs 0.13 is the design's CouchDB client. This module uses it for what it does right: the
//! pooled `reqwest` client with the Basic `Authorization` header, the server URL, request building
//! ([`couch_rs::Client::req`]) and the wire shapes of change rows
//! ([`couch_rs::types::changes::ChangeEvent`]). Its higher-level calls are not used, each for a
//! reason named where the raw request is built (tools/couch-peer/README.md lists them all):
//! - every couch_rs call maps errors through `error_for_status()` or reads only `error`, dropping
//!   CouchDB's `reason` and making a missing database indistinguishable from a missing document,
//!   which this crate's [`Error`] must keep apart;
//! - document ids are form-urlencoded (a space becomes `+`, which CouchDB reads as a plus);
//! - its `ChangesStream` cannot be named, has no `filter`/`heartbeat`/`include_docs` choice and
//!   panics when polled after a connection error;
//! - `bulk_upsert` fails on new documents; there is nothing for `_local`, `_session` or
//!   `_db_updates`;
//! - its client-wide timeout would also cut live feeds, so the client is built without one and every
//!   ordinary request carries [`CouchConfig::request_timeout`] instead.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::decode;
use crate::error::{Error, Result};
use crate::store::{DbUpdateStream, DocStore, FeedStream};
use crate::types::{
    AllDocsPage, AllDocsQuery, BulkItem, ChangesPage, ChangesQuery, DbInfo, DbName, DbUpdate,
    DbUpdateKind, FeedEvent, FeedQuery, Rev, Seq, ViewQuery, ViewRow,
};

mod wire;

use wire::{
    body_lines, decode_err, encode_db, encode_doc_id, map_status, parse_feed_line, rev_from_write,
    seq_of,
};

/// Document ids: everything but RFC 3986 unreserved characters is encoded, so a space is `%20`
/// (never `+`), and `/`, `?`, `#`, `+` and `%` survive the trip.
const DOC_ID_SET: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Database names are encoded the same way (`numbers/+1415` → `numbers%2F%2B1415`); `_` and `-`
/// stay literal, so URLs in messages read `system_config`, not `system%5Fconfig`.
const DB_NAME_SET: &AsciiSet = DOC_ID_SET;

/// The timeout of ordinary requests when none is configured: 30 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How many ordinary requests one client has in flight at most when none is configured: 16.
pub const DEFAULT_MAX_REQUESTS: usize = 16;

/// The heartbeat asked of the `_db_updates` feed: 10 s. The feed is declared dead after three
/// missed heartbeats.
const DB_UPDATES_HEARTBEAT: Duration = Duration::from_secs(10);

/// How to authenticate against CouchDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// An `Authorization: Basic` header on every request (or nothing without a user).
    Basic,
    /// A session cookie from `POST /_session`, renewed by logging in again on a 401.
    Cookie,
}

/// Where the CouchDB server is and how to talk to it.
#[derive(Clone)]
pub struct CouchConfig {
    /// The server's URL, e.g. `http://127.0.0.1:5984` (a path prefix behind a proxy is kept).
    /// Credentials embedded in the URL are taken out by [`CouchConfig::from_url`].
    pub url: String,
    /// The user name; `None` talks to the server anonymously (admin party).
    pub user: Option<String>,
    /// The password.
    pub password: Option<String>,
    /// Basic or cookie authentication (only used with a user).
    pub auth: AuthMode,
    /// The total time an ordinary request may take, connect to end of body. Live feeds have no
    /// total timeout: the follower checks their liveness by heartbeats.
    pub request_timeout: Duration,
    /// How many ordinary requests (everything but live feeds) are in flight at most; the rest
    /// wait their turn, so no burst of the client's own (a start reading thousands of
    /// databases) can exhaust the server or time itself out. Their `request_timeout` starts
    /// once they are sent. Live feeds are outside the limit: a client holds a fixed few.
    pub max_requests: usize,
}

impl fmt::Debug for CouchConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CouchConfig")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("auth", &self.auth)
            .field("request_timeout", &self.request_timeout)
            .field("max_requests", &self.max_requests)
            .finish()
    }
}

impl CouchConfig {
    /// A configuration from a URL that may carry credentials (`http://admin:secret@host:5984`):
    /// they are percent-decoded and moved to `user`/`password`, and the URL is kept without them.
    /// Defaults: [`AuthMode::Basic`], [`DEFAULT_REQUEST_TIMEOUT`], [`DEFAULT_MAX_REQUESTS`].
    ///
    /// # Errors
    /// [`Error::BadRequest`] when the URL does not parse or is not `http`/`https`.
    pub fn from_url(url: &str) -> Result<CouchConfig> {
        let mut parsed = parse_url(url)?;
        let user = match parsed.username() {
            "" => None,
            name => Some(decode_userinfo(name)),
        };
        let password = parsed.password().map(decode_userinfo);
        // Both setters only fail on URLs that cannot have credentials; `parse_url` ruled them out.
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        Ok(CouchConfig {
            url: parsed.to_string(),
            user,
            password,
            auth: AuthMode::Basic,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_requests: DEFAULT_MAX_REQUESTS,
        })
    }
}

fn decode_userinfo(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn parse_url(url: &str) -> Result<url::Url> {
    let parsed = url::Url::parse(url)
        .map_err(|e| Error::BadRequest { reason: format!("invalid CouchDB url {url:?}: {e}") })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.cannot_be_a_base() {
        return Err(Error::BadRequest {
            reason: format!("invalid CouchDB url {url:?}: expected http:// or https://"),
        });
    }
    Ok(parsed)
}

/// The CouchDB backend of [`DocStore`]. Cheap to clone; clones share one connection pool.
#[derive(Clone)]
pub struct CouchStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: couch_rs::Client,
    /// The URL without credentials, for error messages.
    base: url::Url,
    /// The URL's path without its trailing `/` (empty unless behind a prefixing proxy).
    prefix: String,
    config: CouchConfig,
    /// `AuthSession=…` in cookie mode, once logged in.
    session: Mutex<Option<String>>,
    /// The one limit every ordinary request goes through ([`CouchConfig::max_requests`]).
    limit: tokio::sync::Semaphore,
}

impl fmt::Debug for CouchStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CouchStore").field("config", &self.inner.config).finish()
    }
}

/// What a request was about, to tell a missing database from a missing document.
#[derive(Clone, Copy)]
enum Ctx<'a> {
    Server,
    Db(&'a DbName),
    Doc(&'a DbName, &'a str),
}

/// One request, rebuildable for the retry after a cookie re-login.
struct Req {
    method: Method,
    path: String,
    query: HashMap<String, String>,
    body: Option<Vec<u8>>,
    /// `None` for live feeds.
    timeout: Option<Duration>,
    /// Ask for an uncompressed body: couch_rs's client always offers gzip, and a compressing
    /// proxy (or stock pouchdb-server) would then hold a live feed's heartbeats in its buffer.
    identity: bool,
}

impl Req {
    fn new(method: Method, path: String) -> Req {
        Req { method, path, query: HashMap::new(), body: None, timeout: None, identity: false }
    }
    fn q(mut self, key: &str, value: impl Into<String>) -> Req {
        self.query.insert(key.to_owned(), value.into());
        self
    }
    fn json(mut self, body: &Value) -> Req {
        self.body = Some(body.to_string().into_bytes());
        self
    }
}

impl CouchStore {
    /// A store talking to `config.url`. Nothing is sent until the first call; in cookie mode the
    /// first call logs in.
    ///
    /// # Errors
    /// [`Error::BadRequest`] for a bad URL, [`Error::Transport`] if the HTTP client cannot be built.
    pub fn new(config: CouchConfig) -> Result<CouchStore> {
        let base = parse_url(&config.url)?;
        if !base.username().is_empty() || base.password().is_some() {
            return Err(Error::BadRequest {
                reason: "credentials in CouchConfig::url: use CouchConfig::from_url to move them \
                         to user/password"
                    .into(),
            });
        }
        let basic_user = match config.auth {
            AuthMode::Basic => config.user.as_deref(),
            AuthMode::Cookie => None,
        };
        // No client-wide timeout (couch_rs's default of 10 s would also end live feeds): ordinary
        // requests carry `request_timeout` one by one.
        let client = couch_rs::Client::new_with_timeout(
            base.as_str(),
            basic_user,
            basic_user.and(config.password.as_deref()),
            None,
        )
        .map_err(|e| Error::Transport { url: base.to_string(), message: e.to_string() })?;
        let prefix = base.path().trim_end_matches('/').to_owned();
        let limit = tokio::sync::Semaphore::new(config.max_requests.max(1));
        let session = Mutex::new(None);
        Ok(CouchStore { inner: Arc::new(Inner { client, base, prefix, config, session, limit }) })
    }

    /// The server URL (without credentials).
    pub fn url(&self) -> &str {
        self.inner.base.as_str()
    }

    fn db_path(&self, db: &DbName) -> String {
        format!("{}/{}", self.inner.prefix, encode_db(db))
    }

    fn doc_path(&self, db: &DbName, id: &str) -> String {
        format!("{}/{}", self.db_path(db), encode_doc_id(id))
    }

    fn server_path(&self, rest: &str) -> String {
        format!("{}/{rest}", self.inner.prefix)
    }

    fn display_url(&self, path: &str) -> String {
        let mut url = self.inner.base.clone();
        url.set_path(path);
        url.to_string()
    }

    fn cookie_mode(&self) -> bool {
        self.inner.config.auth == AuthMode::Cookie && self.inner.config.user.is_some()
    }

    /// `POST /_session`: couch_rs has no session API, so this is a raw request.
    async fn login(&self) -> Result<()> {
        let config = &self.inner.config;
        let body = json!({
            "name": config.user.clone().unwrap_or_default(),
            "password": config.password.clone().unwrap_or_default(),
        });
        let path = self.server_path("_session");
        let resp = self
            .inner
            .client
            .req(Method::POST, &path, None)
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body.to_string())
            .timeout(config.request_timeout)
            .send()
            .await
            .map_err(|e| self.transport_error(&path, &e))?;
        if !resp.status().is_success() {
            return Err(self.error_from(resp, Ctx::Server, &path).await);
        }
        self.remember_cookie(&resp);
        if self.inner.session.lock().expect("session lock").is_none() {
            return Err(Error::Unauthorized {
                reason: "POST /_session succeeded without an AuthSession cookie".into(),
            });
        }
        Ok(())
    }

    fn remember_cookie(&self, resp: &Response) {
        for value in resp.headers().get_all(reqwest::header::SET_COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            let pair = value.split(';').next().unwrap_or_default().trim();
            if let Some(token) = pair.strip_prefix("AuthSession=") {
                if !token.is_empty() {
                    *self.inner.session.lock().expect("session lock") = Some(pair.to_owned());
                }
            }
        }
    }

    fn transport_error(&self, path: &str, e: &reqwest::Error) -> Error {
        let url = self.display_url(path);
        if e.is_timeout() {
            Error::Timeout { url }
        } else {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                message.push_str(": ");
                message.push_str(&s.to_string());
                source = s.source();
            }
            Error::Transport { url, message }
        }
    }

    /// Sends a request built with couch_rs's [`couch_rs::Client::req`], logging in first in
    /// cookie mode and once more on a 401. Any status is returned; see [`Self::expect_ok`].
    async fn send(&self, req: &Req) -> Result<Response> {
        let cookie_mode = self.cookie_mode();
        let mut relogged = false;
        loop {
            if cookie_mode && self.inner.session.lock().expect("session lock").is_none() {
                self.login().await?;
            }
            let query = (!req.query.is_empty()).then_some(&req.query);
            let mut builder = self
                .inner
                .client
                .req(req.method.clone(), &req.path, query)
                .header(reqwest::header::ACCEPT, "application/json");
            if cookie_mode {
                if let Some(cookie) = self.inner.session.lock().expect("session lock").clone() {
                    builder = builder.header(reqwest::header::COOKIE, cookie);
                }
            }
            if let Some(body) = &req.body {
                builder = builder.body(body.clone());
            }
            if let Some(timeout) = req.timeout {
                builder = builder.timeout(timeout);
            }
            if req.identity {
                builder = builder.header(reqwest::header::ACCEPT_ENCODING, "identity");
            }
            let resp = builder.send().await.map_err(|e| self.transport_error(&req.path, &e))?;
            if cookie_mode {
                self.remember_cookie(&resp);
                if resp.status() == StatusCode::UNAUTHORIZED && !relogged {
                    // The session expired (or was never valid): log in again and retry once.
                    *self.inner.session.lock().expect("session lock") = None;
                    relogged = true;
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    /// An ordinary request: with the configured timeout.
    async fn call(&self, req: Req, ctx: Ctx<'_>) -> Result<Response> {
        let _turn = self.turn().await;
        self.call_in_turn(req, ctx).await
    }

    /// [`CouchStore::call`] for a caller that holds its turn (until it has read the body).
    async fn call_in_turn(&self, mut req: Req, ctx: Ctx<'_>) -> Result<Response> {
        req.timeout = Some(self.inner.config.request_timeout);
        let resp = self.send(&req).await?;
        self.expect_ok(resp, ctx, &req.path).await
    }

    /// Waits for a place under [`CouchConfig::max_requests`]; the place is held until the
    /// returned permit is dropped.
    async fn turn(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.inner.limit.acquire().await.expect("the request limit is never closed")
    }

    /// An ordinary request whose JSON answer is returned.
    async fn call_json(&self, req: Req, ctx: Ctx<'_>) -> Result<Value> {
        let path = req.path.clone();
        let _turn = self.turn().await;
        let resp = self.call_in_turn(req, ctx).await?;
        self.read_json(resp, &path).await
    }

    /// The JSON answer, decoded whatever documents it holds ([`crate::decode`]); a repair is
    /// logged.
    async fn read_json(&self, resp: Response, path: &str) -> Result<Value> {
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(path, &e))?;
        let url = self.display_url(path);
        let (value, repaired) = decode::decode_value(&bytes, &format!("response of {url}"))?;
        if let Some(repairs) = repaired {
            tracing::warn!(url, repairs, "A response was repaired to be decoded.");
        }
        Ok(value)
    }

    /// An ordinary request whose raw body is returned (for the row-by-row page decoders).
    async fn call_bytes(&self, req: Req, ctx: Ctx<'_>) -> Result<bytes::Bytes> {
        let path = req.path.clone();
        let _turn = self.turn().await;
        let resp = self.call_in_turn(req, ctx).await?;
        resp.bytes().await.map_err(|e| self.transport_error(&path, &e))
    }

    async fn expect_ok(&self, resp: Response, ctx: Ctx<'_>, path: &str) -> Result<Response> {
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(self.error_from(resp, ctx, path).await)
        }
    }

    /// Turns a non-2xx answer into a typed error that keeps CouchDB's `reason`.
    async fn error_from(&self, resp: Response, ctx: Ctx<'_>, path: &str) -> Error {
        let status = resp.status();
        tracing::debug!(url = %self.display_url(path), %status, "CouchDB refused a request.");
        let body = resp.bytes().await.unwrap_or_default();
        let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let error = parsed.get("error").and_then(Value::as_str).unwrap_or_default().to_owned();
        let reason = match parsed.get("reason").and_then(Value::as_str) {
            Some(r) => r.to_owned(),
            None if !body.is_empty() && parsed.is_null() => {
                String::from_utf8_lossy(&body).trim().chars().take(300).collect()
            }
            None if !error.is_empty() => error.clone(),
            None => status.canonical_reason().unwrap_or("no reason given").to_owned(),
        };
        map_status(status.as_u16(), error, reason, ctx)
    }
}

#[async_trait]
impl DocStore for CouchStore {
    fn backend(&self) -> &'static str {
        "couchdb"
    }

    // couch_rs's `list_dbs` decodes the body without looking at the status, so a 401 would become
    // a decode error: raw request.
    async fn list_dbs(&self) -> Result<Vec<DbName>> {
        let v = self
            .call_json(Req::new(Method::GET, self.server_path("_all_dbs")), Ctx::Server)
            .await?;
        let names = v.as_array().ok_or_else(|| decode_err("_all_dbs", "not an array"))?;
        let mut dbs: Vec<DbName> = names
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|name| match DbName::new(name) {
                Ok(db) => Some(db),
                Err(e) => {
                    tracing::debug!(name, error = %e, "Skipping a database whose name CouchDB would refuse.");
                    None
                }
            })
            .collect();
        dbs.sort();
        Ok(dbs)
    }

    // couch_rs has `exists` only behind its `integration-tests` feature.
    async fn db_exists(&self, db: &DbName) -> Result<bool> {
        let mut req = Req::new(Method::HEAD, self.db_path(db));
        req.timeout = Some(self.inner.config.request_timeout);
        let _turn = self.turn().await;
        let resp = self.send(&req).await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.error_from(resp, Ctx::Db(db), &req.path).await),
        }
    }

    // couch_rs's `make_db` keeps only `error` ("file_exists"), not the status class or `reason`.
    async fn create_db(&self, db: &DbName) -> Result<()> {
        self.call(Req::new(Method::PUT, self.db_path(db)), Ctx::Db(db)).await.map(drop)
    }

    // couch_rs's `destroy_db` answers `false` for every failure, whatever it was.
    async fn delete_db(&self, db: &DbName) -> Result<()> {
        self.call(Req::new(Method::DELETE, self.db_path(db)), Ctx::Db(db)).await.map(drop)
    }

    // couch_rs's `get_info` insists on CouchDB 3's fields (`sizes`, string `update_seq`, …).
    async fn db_info(&self, db: &DbName) -> Result<DbInfo> {
        let v = self.call_json(Req::new(Method::GET, self.db_path(db)), Ctx::Db(db)).await?;
        let count = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        Ok(DbInfo {
            db: db.clone(),
            doc_count: count("doc_count"),
            doc_del_count: count("doc_del_count"),
            update_seq: seq_of(v.get("update_seq").unwrap_or(&Value::from(0))),
        })
    }

    // couch_rs's `get_raw` form-urlencodes the id (a space becomes `+`) and drops the 404 reason.
    async fn get(&self, db: &DbName, id: &str) -> Result<Option<Value>> {
        match self.call_json(Req::new(Method::GET, self.doc_path(db, id)), Ctx::Doc(db, id)).await {
            Ok(doc) => Ok(Some(doc)),
            Err(Error::DocNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    // couch_rs's `save` form-urlencodes the id and keeps only `error` on failure.
    async fn put(&self, db: &DbName, doc: Value) -> Result<Rev> {
        if !doc.is_object() {
            return Err(Error::BadRequest { reason: "a document must be a JSON object".into() });
        }
        match doc.get("_id").and_then(Value::as_str).map(str::to_owned) {
            Some(id) => {
                let req = Req::new(Method::PUT, self.doc_path(db, &id)).json(&doc);
                let v = self.call_json(req, Ctx::Doc(db, &id)).await?;
                rev_from_write(&v, &id)
            }
            None => {
                let req = Req::new(Method::POST, self.db_path(db)).json(&doc);
                let v = self.call_json(req, Ctx::Doc(db, "(new)")).await?;
                rev_from_write(&v, "(new document)")
            }
        }
    }

    // couch_rs's `remove` reports every failure as "Failed to delete document".
    async fn delete(&self, db: &DbName, id: &str, rev: &Rev) -> Result<Rev> {
        let req = Req::new(Method::DELETE, self.doc_path(db, id)).q("rev", rev.as_str());
        let v = self.call_json(req, Ctx::Doc(db, id)).await?;
        rev_from_write(&v, id)
    }

    // couch_rs's `bulk_docs` loses the status of a failed request (a missing db is a decode error).
    async fn bulk_docs(&self, db: &DbName, docs: Vec<Value>) -> Result<Vec<BulkItem>> {
        let n = docs.len();
        let req = Req::new(Method::POST, format!("{}/_bulk_docs", self.db_path(db)))
            .json(&json!({ "docs": docs }));
        let v = self.call_json(req, Ctx::Db(db)).await?;
        let rows = v.as_array().ok_or_else(|| decode_err("_bulk_docs", "not an array"))?;
        if rows.len() != n {
            return Err(decode_err(
                "_bulk_docs",
                format!("{} results for {n} documents", rows.len()),
            ));
        }
        Ok(rows
            .iter()
            .map(|row| {
                let id = row.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
                let outcome = match row.get("error").and_then(Value::as_str) {
                    None => rev_from_write(row, &id),
                    Some(error) => {
                        let reason =
                            row.get("reason").and_then(Value::as_str).unwrap_or(error).to_owned();
                        let status = match error {
                            "conflict" => 409,
                            "forbidden" => 403,
                            "unauthorized" => 401,
                            "not_found" => 404,
                            "bad_request" => 400,
                            _ => 500,
                        };
                        Err(map_status(status, error.to_owned(), reason, Ctx::Doc(db, &id)))
                    }
                };
                BulkItem { id, outcome }
            })
            .collect())
    }

    // couch_rs's `get_all_params` only knows its own `QueryParams`, which has no `skip`-safe key
    // encoding for ids and drops errors' reasons.
    async fn all_docs(&self, db: &DbName, query: &AllDocsQuery) -> Result<AllDocsPage> {
        let mut req = Req::new(Method::GET, format!("{}/_all_docs", self.db_path(db)));
        if let Some(k) = &query.start_key {
            req = req.q("start_key", Value::from(k.as_str()).to_string());
        }
        if let Some(k) = &query.end_key {
            req = req.q("end_key", Value::from(k.as_str()).to_string());
        }
        if query.exclusive_end {
            req = req.q("inclusive_end", "false");
        }
        if let Some(limit) = query.limit {
            req = req.q("limit", limit.to_string());
        }
        if query.skip > 0 {
            req = req.q("skip", query.skip.to_string());
        }
        if query.descending {
            req = req.q("descending", "true");
        }
        if query.include_docs {
            req = req.q("include_docs", "true");
        }
        let body = self.call_bytes(req, Ctx::Db(db)).await?;
        decode::decode_all_docs_page(db.as_str(), &body)
    }

    // couch_rs's `get_bulk_raw` silently drops missing ids, so the answer cannot be kept in order.
    async fn get_many(&self, db: &DbName, ids: &[String]) -> Result<Vec<Option<Value>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let req = Req::new(Method::POST, format!("{}/_all_docs", self.db_path(db)))
            .q("include_docs", "true")
            .json(&json!({ "keys": ids }));
        let v = self.call_json(req, Ctx::Db(db)).await?;
        let rows = v
            .get("rows")
            .and_then(Value::as_array)
            .ok_or_else(|| decode_err("_all_docs", "no rows"))?;
        if rows.len() != ids.len() {
            return Err(decode_err(
                "_all_docs",
                format!("{} rows for {} keys", rows.len(), ids.len()),
            ));
        }
        Ok(rows
            .iter()
            .map(|row| {
                let deleted =
                    row.pointer("/value/deleted").and_then(Value::as_bool).unwrap_or(false);
                if row.get("error").is_some() || deleted {
                    None
                } else {
                    row.get("doc").filter(|d| d.is_object()).cloned()
                }
            })
            .collect())
    }

    // couch_rs's `changes` is continuous only, always with documents, without filters.
    async fn changes(&self, db: &DbName, query: &ChangesQuery) -> Result<ChangesPage> {
        let method = if query.selector.is_some() { Method::POST } else { Method::GET };
        let mut req = Req::new(method, format!("{}/_changes", self.db_path(db)))
            .q("feed", "normal")
            .q("since", query.since.to_query());
        if query.include_docs {
            req = req.q("include_docs", "true");
        }
        if let Some(limit) = query.limit {
            req = req.q("limit", limit.to_string());
        }
        if let Some(selector) = &query.selector {
            req = req.q("filter", "_selector").json(&json!({ "selector": selector }));
        }
        let body = self.call_bytes(req, Ctx::Db(db)).await?;
        decode::decode_changes_page(db.as_str(), &body, &query.since, query.fields.as_ref())
    }

    // couch_rs's `ChangesStream` is unnameable, has no heartbeat/filter/include_docs choice, runs
    // under the client timeout and panics when polled after an error: raw streamed request.
    async fn open_feed(&self, db: &DbName, query: &FeedQuery) -> Result<FeedStream> {
        let method = if query.selector.is_some() { Method::POST } else { Method::GET };
        let heartbeat_ms = query.heartbeat.as_millis().max(1);
        let mut req = Req::new(method, format!("{}/_changes", self.db_path(db)))
            .q("feed", "continuous")
            .q("since", query.since.to_query())
            .q("heartbeat", heartbeat_ms.to_string());
        if query.include_docs {
            req = req.q("include_docs", "true");
        }
        if let Some(selector) = &query.selector {
            req = req.q("filter", "_selector").json(&json!({ "selector": selector }));
        }
        req.identity = true;
        // No total timeout on the feed; the response headers must still come in time.
        let wait = self.inner.config.request_timeout.max(query.heartbeat * 3);
        let resp = match tokio::time::timeout(wait, self.send(&req)).await {
            Ok(resp) => resp?,
            Err(_) => return Err(Error::Timeout { url: self.display_url(&req.path) }),
        };
        let resp = self.expect_ok(resp, Ctx::Db(db), &req.path).await?;
        let db = db.clone();
        let store = self.clone();
        let path = req.path;
        let fields = query.fields.clone();
        let lines = Box::pin(body_lines(resp.bytes_stream()));
        // The connection is over after `End` or an error: the stream stops there.
        let events = futures::stream::unfold(Some(lines), move |state| {
            let store = store.clone();
            let path = path.clone();
            let db = db.clone();
            let fields = fields.clone();
            async move {
                let mut lines = state?;
                match lines.next().await? {
                    Err(e) => Some((vec![Err(store.transport_error(&path, &e))], None)),
                    Ok(line) => match parse_feed_line(&line, &db, fields.as_ref()) {
                        Err(e) => Some((vec![Err(e)], None)),
                        Ok(events) => {
                            let end = events.iter().any(|e| matches!(e, FeedEvent::End { .. }));
                            Some((events.into_iter().map(Ok).collect(), (!end).then_some(lines)))
                        }
                    },
                }
            }
        });
        Ok(Box::pin(events.flat_map(futures::stream::iter)))
    }

    // couch_rs has no `_db_updates`.
    async fn db_updates(&self, since: &Seq) -> Result<Option<DbUpdateStream>> {
        let heartbeat = DB_UPDATES_HEARTBEAT;
        let mut req = Req::new(Method::GET, self.server_path("_db_updates"))
            .q("feed", "continuous")
            .q("since", since.to_query())
            .q("heartbeat", heartbeat.as_millis().to_string());
        req.identity = true;
        let wait = self.inner.config.request_timeout.max(heartbeat * 3);
        let resp = match tokio::time::timeout(wait, self.send(&req)).await {
            Ok(resp) => resp?,
            Err(_) => return Err(Error::Timeout { url: self.display_url(&req.path) }),
        };
        if matches!(resp.status().as_u16(), 400 | 404 | 405 | 501) {
            // pouchdb-server answers 400 (its `_db_updates` is not implemented): no server-wide feed here.
            return Ok(None);
        }
        let resp = self.expect_ok(resp, Ctx::Server, &req.path).await?;
        let url = self.display_url(&req.path);
        let store = self.clone();
        let path = req.path.clone();
        let lines = Box::pin(body_lines(resp.bytes_stream()));
        // Liveness: the connection is declared dead after three missed heartbeats.
        let dead_after = heartbeat * 3;
        let stream = futures::stream::unfold(Some(lines), move |state| {
            let store = store.clone();
            let path = path.clone();
            let url = url.clone();
            async move {
                let mut lines = state?;
                loop {
                    let line = match tokio::time::timeout(dead_after, lines.next()).await {
                        Err(_) => return Some((Err(Error::Timeout { url: url.clone() }), None)),
                        Ok(None) => return None,
                        Ok(Some(Err(e))) => {
                            return Some((Err(store.transport_error(&path, &e)), None))
                        }
                        Ok(Some(Ok(line))) => line,
                    };
                    let text = String::from_utf8_lossy(&line);
                    if text.trim().is_empty() {
                        continue;
                    }
                    let row: Value = match serde_json::from_str(&text) {
                        Ok(row) => row,
                        Err(e) => return Some((Err(decode_err("_db_updates row", e)), None)),
                    };
                    if row.get("db_name").is_none() && row.get("last_seq").is_some() {
                        return None;
                    }
                    let kind = match row.get("type").and_then(Value::as_str) {
                        Some("created") => DbUpdateKind::Created,
                        Some("deleted") => DbUpdateKind::Deleted,
                        Some("updated") => DbUpdateKind::Updated,
                        _ => continue,
                    };
                    let Some(db) = row
                        .get("db_name")
                        .and_then(Value::as_str)
                        .and_then(|n| DbName::new(n).ok())
                    else {
                        continue;
                    };
                    let seq = row.get("seq").cloned().map(Seq::from_json);
                    return Some((Ok(DbUpdate { db, kind, seq }), Some(lines)));
                }
            }
        });
        Ok(Some(Box::pin(stream)))
    }

    // couch_rs has no `_local` helpers (and its `get` would encode the `/`).
    async fn get_local(&self, db: &DbName, name: &str) -> Result<Option<Value>> {
        let id = format!("_local/{name}");
        match self.call_json(Req::new(Method::GET, self.doc_path(db, &id)), Ctx::Doc(db, &id)).await
        {
            Ok(doc) => Ok(Some(doc)),
            Err(Error::DocNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn put_local(&self, db: &DbName, name: &str, body: Value) -> Result<()> {
        let id = format!("_local/{name}");
        let Value::Object(mut fields) = body else {
            return Err(Error::BadRequest {
                reason: format!("{id}: a document must be a JSON object"),
            });
        };
        fields.remove("_rev");
        fields.insert("_id".into(), Value::from(id.as_str()));
        // `_local` documents still need their current rev to be replaced: read it, write, and
        // read again if someone else wrote in between.
        for _ in 0..5 {
            let mut doc = fields.clone();
            if let Some(current) = self.get_local(db, name).await? {
                if let Some(rev) = current.get("_rev") {
                    doc.insert("_rev".into(), rev.clone());
                }
            }
            let req = Req::new(Method::PUT, self.doc_path(db, &id)).json(&Value::Object(doc));
            match self.call(req, Ctx::Doc(db, &id)).await {
                Ok(_) => return Ok(()),
                Err(Error::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict { db: db.as_str().to_owned(), id })
    }

    // couch_rs's `query_raw` loses the reason of a missing view or design document.
    async fn view(
        &self,
        db: &DbName,
        ddoc: &str,
        view: &str,
        query: &ViewQuery,
    ) -> Result<Vec<ViewRow>> {
        let ddoc_id = format!("_design/{ddoc}");
        let path = format!(
            "{}/_view/{}",
            self.doc_path(db, &ddoc_id),
            utf8_percent_encode(view, DOC_ID_SET)
        );
        let mut req = Req::new(Method::GET, path);
        for (name, value) in
            [("startkey", &query.start_key), ("endkey", &query.end_key), ("key", &query.key)]
        {
            if let Some(v) = value {
                req = req.q(name, v.to_string());
            }
        }
        if let Some(limit) = query.limit {
            req = req.q("limit", limit.to_string());
        }
        if query.include_docs {
            req = req.q("include_docs", "true");
        }
        if let Some(reduce) = query.reduce {
            req = req.q("reduce", reduce.to_string());
        }
        if query.group {
            req = req.q("group", "true");
        }
        let v = self.call_json(req, Ctx::Doc(db, &ddoc_id)).await?;
        let rows =
            v.get("rows").and_then(Value::as_array).ok_or_else(|| decode_err("view", "no rows"))?;
        Ok(rows
            .iter()
            .map(|row| ViewRow {
                id: row.get("id").and_then(Value::as_str).map(str::to_owned),
                key: row.get("key").cloned().unwrap_or(Value::Null),
                value: row.get("value").cloned().unwrap_or(Value::Null),
                doc: row.get("doc").filter(|d| !d.is_null()).cloned(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests;

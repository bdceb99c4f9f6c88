//! Operations endpoints: `/metrics` (Prometheus text), `/healthz` (ready only when every
//! reactor has caught up with its feeds and none is failing), and the layer every request passes:
//! request id and HTTP metrics.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;

use super::envelope::{RequestId, CURRENT_REQUEST_ID, REQUEST_ID_HEADER};
use super::error::ApiError;
use super::AppState;

/// Installs the global Prometheus recorder and describes our metrics. `None` if a recorder is
/// already installed (a second daemon in one process, as tests may do).
pub(crate) fn install_metrics() -> Option<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ])
        .ok()?
        .install_recorder()
        .ok()?;
    keep_up(handle.clone());
    metrics::describe_counter!(
        "switchboard_http_requests_total",
        "HTTP requests by route, method and status"
    );
    metrics::describe_histogram!(
        "switchboard_http_request_duration_seconds",
        "HTTP request latency by route"
    );
    metrics::describe_counter!(
        "switchboard_route_lookups_total",
        "route lookups served (POST /v2/stepswitch/route)"
    );
    metrics::describe_counter!("switchboard_api_errors_total", "API error replies by status");
    metrics::describe_gauge!("switchboard_http_connections_open", "HTTP connections being served");
    metrics::describe_counter!(
        "switchboard_http_connections_refused_total",
        "HTTP connections refused with a 503 because api.max_connections were open"
    );
    metrics::describe_counter!("switchboard_api_writes_total", "documents written through the API");
    metrics::describe_counter!("switchboard_api_auth_total", "tokens issued");
    metrics::describe_counter!(
        "switchboard_number_transitions_total",
        "number operations performed through the API, by operation"
    );
    metrics::describe_gauge!("switchboard_routing_generation", "route table swaps since start");
    metrics::describe_gauge!(
        "switchboard_routing_table_builds",
        "builds of each route table (reloads)"
    );
    metrics::describe_gauge!(
        "switchboard_routing_table_build_seconds",
        "duration of each table's last build"
    );
    metrics::describe_gauge!(
        "switchboard_routing_table_errors",
        "compile diagnostics of each table's last build"
    );
    metrics::describe_gauge!(
        "switchboard_routing_rules_quarantined",
        "rules not evaluated: refused as catastrophic, or out of their backtracking budget"
    );
    metrics::describe_gauge!(
        "switchboard_feed_caught_up",
        "1 when a followed database is caught up (feed lag 0), else 0"
    );
    metrics::describe_gauge!(
        "switchboard_feed_errors",
        "1 when a followed database's last read failed"
    );
    metrics::describe_gauge!(
        "switchboard_feed_degraded",
        "1 while a reactor's feeds or reads are failing (reconnecting, silent past 3 heartbeats)"
    );
    metrics::describe_gauge!(
        "switchboard_feed_skipped_rows",
        "rows a reactor skipped since start because they could not be decoded"
    );
    metrics::describe_gauge!(
        "switchboard_feed_repaired_rows",
        "rows a reactor decoded after a repair since start (lone surrogates, too-deep values)"
    );
    metrics::describe_gauge!("switchboard_accounts_known", "accounts in the API's account index");
    metrics::describe_gauge!("switchboard_inbound_numbers", "numbers in the live inbound table");
    metrics::describe_gauge!(
        "switchboard_inbound_changes_applied",
        "number changes applied to the inbound table since start"
    );
    metrics::describe_gauge!(
        "switchboard_inbound_dbs_catching_up",
        "number databases whose backlog is still being read (feed lag)"
    );
    Some(handle)
}

/// How often the recorder folds the histogram samples recorded since the last fold (one per
/// request) into their buckets.
const METRICS_UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// The recorder keeps every histogram sample until it is folded into the buckets: without a
/// periodic fold, a daemon nobody scrapes grows with every request it serves, and the next
/// scrape folds them all at once on an async worker. A thread of its own folds them every
/// [`METRICS_UPKEEP_EVERY`], so neither happens and no request waits for a fold.
fn keep_up(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || loop {
        std::thread::sleep(METRICS_UPKEEP_EVERY);
        handle.run_upkeep();
    });
    if let Err(err) = spawned {
        tracing::warn!(error = %err, "cannot start the metrics upkeep thread; /metrics folds the samples when scraped");
    }
}

/// Sets the gauges that are read from the reactors' status at scrape time.
fn refresh_gauges(state: &AppState) {
    let status = state.routing.status();
    metrics::gauge!("switchboard_routing_generation").set(status.generation as f64);
    for table in &status.tables {
        let account = table.account_id.clone().unwrap_or_default();
        let labels = [("scope", table.scope.to_string()), ("account_id", account)];
        metrics::gauge!("switchboard_routing_table_builds", &labels).set(table.builds as f64);
        metrics::gauge!("switchboard_routing_table_build_seconds", &labels)
            .set(table.build_ms / 1000.0);
        metrics::gauge!("switchboard_routing_table_errors", &labels).set(table.errors.len() as f64);
        metrics::gauge!("switchboard_routing_rules_quarantined", &labels)
            .set(table.quarantined as f64);
    }
    for source in &status.sources {
        let labels = [("db", source.db.clone())];
        metrics::gauge!("switchboard_feed_caught_up", &labels).set(if source.caught_up {
            1.0
        } else {
            0.0
        });
        metrics::gauge!("switchboard_feed_errors", &labels).set(if source.last_error.is_some() {
            1.0
        } else {
            0.0
        });
    }
    let accounts = [("db", "accounts (api)".to_string())];
    metrics::gauge!("switchboard_feed_caught_up", &accounts).set(if state.auth.is_caught_up() {
        1.0
    } else {
        0.0
    });
    metrics::gauge!("switchboard_accounts_known").set(state.auth.account_count() as f64);
    for check in &state.checks {
        let Some(feeds) = &check.feeds else { continue };
        let report = feeds();
        let labels = [("reactor", check.name.to_string())];
        metrics::gauge!("switchboard_feed_degraded", &labels).set(if report.degraded() {
            1.0
        } else {
            0.0
        });
        metrics::gauge!("switchboard_feed_skipped_rows", &labels).set(report.skipped_rows as f64);
        metrics::gauge!("switchboard_feed_repaired_rows", &labels).set(report.repaired_rows as f64);
    }
    if let Some(inbound) = &state.inbound {
        let status = inbound.status();
        metrics::gauge!("switchboard_inbound_numbers").set(status.numbers as f64);
        metrics::gauge!("switchboard_inbound_changes_applied").set(status.changes_applied as f64);
        let pending = status.dbs.saturating_sub(status.dbs_caught_up);
        metrics::gauge!("switchboard_inbound_dbs_catching_up").set(pending as f64);
    }
}

/// `GET /metrics`.
pub(crate) async fn metrics_endpoint(State(state): State<AppState>) -> Response {
    refresh_gauges(&state);
    match &state.metrics {
        Some(handle) => {
            ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render())
                .into_response()
        }
        None => ApiError::Internal("the metrics recorder is not installed in this process".into())
            .into_response(),
    }
}

/// `GET /healthz`: 200 `{"status": "ready"}` when every reactor has caught up; 503
/// `{"status": "degraded", "reason": …, "degraded": [{check, db, reason, since}]}` while a
/// reactor's feed or read is failing (the store unreachable, a feed reconnecting or silent past
/// its heartbeats); else 503 `starting`. Documents skipped or repaired because they could not be
/// decoded do not make the daemon unready: they are listed in `warnings` (and in
/// `/v2/stepswitch/status`). `phase` says how far routing's start has come: `starting` (503 on
/// routes), `offnet_ready` (global routing served, account tables loading in the background),
/// `ready` (every account database there was at start has been read).
pub(crate) async fn healthz(State(state): State<AppState>) -> Response {
    let mut waiting = Vec::new();
    let mut checks = serde_json::Map::new();
    let mut degraded = Vec::new();
    let mut warnings = Vec::new();
    for check in &state.checks {
        let ready = (check.ready)();
        checks.insert(check.name.into(), json!(ready));
        if !ready {
            waiting.push(check.name);
        }
        if let Some(feeds) = &check.feeds {
            let report = feeds();
            for trouble in report.trouble {
                degraded.push(json!({
                    "check": check.name,
                    "db": trouble.db,
                    "reason": trouble.reason,
                    "since": trouble.since,
                }));
            }
            warnings.extend(report.issues.iter().map(|issue| format!("{}: {issue}", check.name)));
        }
    }
    let status = match (degraded.is_empty(), waiting.is_empty()) {
        (false, _) => "degraded",
        (true, false) => "starting",
        (true, true) => "ready",
    };
    let mut body = json!({
        "status": status,
        "phase": state.routing.phase(),
        "checks": checks,
        "backend": state.store.backend(),
        "warnings": warnings,
    });
    if let Some(first) = degraded.first() {
        body["reason"] = json!(format!(
            "{} cannot follow {}: {}",
            first["check"].as_str().unwrap_or_default(),
            first["db"].as_str().unwrap_or_default(),
            first["reason"].as_str().unwrap_or_default()
        ));
        body["degraded"] = json!(degraded);
    }
    let code = if status == "ready" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, axum::Json(body)).into_response()
}

/// Gives every request an id (the client's `X-Request-ID` or a new one) that every reply
/// echoes, in its envelope and its `X-Request-ID` header: the one place the id is attached.
/// Counts and times the request by its route and method, with bounded labels: a path no route
/// matches is `route="unmatched"`, a method the API does not use `method="other"`.
pub(crate) async fn request_layer(req: Request, next: Next) -> Response {
    let id = RequestId::from_headers(req.headers());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = method_label(req.method());
    let started = Instant::now();
    let mut response = CURRENT_REQUEST_ID
        .scope(id.0.clone(), async move { crossbar_shaped(next.run(req).await).await })
        .await;
    if let Ok(value) = HeaderValue::from_str(&id.0) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let status = response.status().as_u16().to_string();
    metrics::counter!("switchboard_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("switchboard_http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The `method` label: the methods HTTP defines as themselves, anything else `other`.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::PUT,
        Method::POST,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    KNOWN.iter().find(|known| *known == method).map_or("other", Method::as_str)
}

/// An error reply that axum's own extractors produced (plain text: a refused query string, an
/// oversized body read as raw bytes) becomes a Crossbar error envelope with the same status.
async fn crossbar_shaped(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let intended = response.extensions().get::<super::route_forms::TextAnswer>().is_some();
    if !status.is_client_error() || is_json || intended {
        return response;
    }
    let text = match axum::body::to_bytes(response.into_body(), 64 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    };
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::METHOD_NOT_ALLOWED => ApiError::InvalidMethod,
        _ => ApiError::Custom {
            status,
            message: "bad_request".into(),
            data: json!({ "message": text }),
        },
    };
    error.into_response()
}

/// The 404 of an unknown route, in Crossbar's shape.
pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// The 405 of a known path with another method, in Crossbar's shape.
pub(crate) async fn invalid_method() -> ApiError {
    ApiError::InvalidMethod
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_the_api_does_not_use_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for invented in ["ZZTEST1", "ZZTEST2", "get"] {
            assert_eq!(method_label(&Method::from_bytes(invented.as_bytes()).unwrap()), "other");
        }
    }
}

//! `knm_telnyx` (`knm_telnyx`): Telnyx's legacy v1 origination API (`https://api.telnyx.com/origination/`,
//! JSON, headers `x-api-user` / `x-api-token`) — `POST number_searches` and `POST number_orders`.
//!
//! Config `number_manager.telnyx`: `user`, `token` (credentials), `base_url` (default
//! `https://api.telnyx.com/origination`), `enable_provisioning` (true), `sandbox_provisioning`
//! (false), `should_keep_best_effort` (false), `should_filter_rates` (false) with `upfront_cost` /
//! `monthly_recurring_cost` (1.0), `request_timeout_ms` (30000). Disconnect makes no call
//! (Kazoo's neither).

use async_trait::async_trait;
use e164::E164;
use serde_json::{json, Map, Value};

use super::external::{self, by_carrier, ExternalCarrier, Provisioning, Secret, Section};
use super::{CarrierCtx, CarrierKind, CarrierSpec, ConfigSection, Found, FoundNumber, SearchQuery};
use crate::doc::{NumberDoc, NumberState};
use crate::error::Error;

const KIND: CarrierKind = CarrierKind::Telnyx;

/// The Telnyx carrier module.
#[derive(Debug, Clone, Copy, Default)]
pub struct Telnyx;

/// `number_manager.telnyx`.
#[derive(Debug, Clone)]
pub struct TelnyxConfig {
    /// `base_url`: the origination API root.
    pub base_url: String,
    /// `user` (`x-api-user`).
    pub user: Secret,
    /// `token` (`x-api-token`).
    pub token: Secret,
    /// `enable_provisioning` / `sandbox_provisioning`.
    pub(crate) provisioning: Provisioning,
    /// `should_keep_best_effort`.
    pub keep_best_effort: bool,
    /// `should_filter_rates` with the `(upfront_cost, monthly_recurring_cost)` kept.
    pub filter_rates: Option<(f64, f64)>,
    /// `request_timeout_ms`.
    pub timeout: std::time::Duration,
}

impl TelnyxConfig {
    /// Reads the section.
    fn read(s: &Section<'_>) -> Result<Self, Error> {
        let cost = |key: &str| -> Result<f64, Error> {
            Ok(match s.string(key)? {
                None => 1.0,
                Some(v) => v.parse().map_err(|_| Error::Config {
                    key: format!("number_manager.telnyx.{key}"),
                    reason: "expected a number".into(),
                })?,
            })
        };
        Ok(TelnyxConfig {
            base_url: s.base_url("base_url", "https://api.telnyx.com/origination")?,
            user: s.secret("user")?,
            token: s.secret("token")?,
            provisioning: Provisioning::read(s, false)?,
            keep_best_effort: s.boolean("should_keep_best_effort", false)?,
            filter_rates: if s.boolean("should_filter_rates", false)? {
                Some((cost("upfront_cost")?, cost("monthly_recurring_cost")?))
            } else {
                None
            },
            timeout: s.timeout()?,
        })
    }

    /// `knm_telnyx_util:req/3`'s request: `method` on `path` under the API root, with the
    /// credentials (missing ones are a config error).
    pub(crate) fn request(
        &self,
        ctx: &CarrierCtx<'_>,
        method: reqwest::Method,
        path: &str,
    ) -> Result<reqwest::RequestBuilder, Error> {
        if self.user.is_empty() || self.token.is_empty() {
            return Err(Error::Config {
                key: "number_manager.telnyx.user/token".into(),
                reason: "credentials are not configured".into(),
            });
        }
        Ok(external::client(ctx)
            .request(method, format!("{}/{path}", self.base_url))
            .header("Accept", "application/json")
            .header("x-api-user", self.user.expose())
            .header("x-api-token", self.token.expose()))
    }

    /// `knm_telnyx_util:req('post', Path, Body)`: the decoded, filtered answer.
    async fn post(
        &self,
        ctx: &CarrierCtx<'_>,
        path: &str,
        number: &str,
        body: &Value,
    ) -> Result<Map<String, Value>, Error> {
        let req = self.request(ctx, reqwest::Method::POST, path)?.json(body);
        let reply = external::send(KIND, number, req, self.timeout).await?;
        let mut obj = map_error(number, reply.status, &reply.body)?;
        self.filter(&mut obj);
        Ok(obj)
    }

    /// Best-effort removal, rate filter and the `limit` truncation of `rep/1`.
    fn filter(&self, obj: &mut Map<String, Value>) {
        let any_best_effort = obj.get("any_best_effort") == Some(&Value::Bool(true));
        let limit = obj.get("limit").and_then(Value::as_u64).unwrap_or(100) as usize;
        if let Some(Value::Array(rows)) = obj.get_mut("result") {
            if !self.keep_best_effort && any_best_effort {
                rows.retain(|r| r.get("best_effort") != Some(&Value::Bool(true)));
            }
            if let Some((upfront, monthly)) = self.filter_rates {
                let num = |r: &Value, k: &str| {
                    r.get(k)
                        .and_then(|v| v.as_str().and_then(|s| s.parse::<f64>().ok()).or(v.as_f64()))
                };
                rows.retain(|r| {
                    num(r, "upfront_cost") == Some(upfront)
                        && num(r, "monthly_recurring_cost") == Some(monthly)
                });
            }
            rows.truncate(limit);
        }
        if let Some(Value::Array(rows)) = obj.get_mut("inexplicit_result") {
            rows.truncate(limit);
        }
    }
}

/// The wire answer → `knm_errors`: a 200 JSON object is the answer; any other status is `by_carrier`
/// with Kazoo's reason (`bad_request`, `unauthenticated`, `unauthorized`, `not_found`,
/// `server_error`, `empty_response`) and the carrier's `message` kept for the log; a body that
/// is not a JSON object is `by_carrier` `malformed_response`.
fn map_error(number: &str, status: u16, body: &str) -> Result<Map<String, Value>, Error> {
    let parsed: Option<Map<String, Value>> = serde_json::from_str(body).ok();
    if status != 200 {
        let reason = match status {
            400 => "bad_request",
            401 => "unauthenticated",
            403 => "unauthorized",
            404 => "not_found",
            s if s >= 500 => "server_error",
            _ => "empty_response",
        };
        let message = parsed
            .as_ref()
            .and_then(|m| m.get("message").and_then(Value::as_str))
            .map(|m| format!(" ({m})"))
            .unwrap_or_default();
        return Err(by_carrier(KIND, number, format!("{reason}{message}")));
    }
    parsed.ok_or_else(|| by_carrier(KIND, number, "malformed_response: not a JSON object"))
}

/// The search kinds of `knm_telnyx:find_numbers/3`.
#[derive(Debug, Clone, PartialEq)]
enum Search {
    TollFree(String),
    Npa { npa: String, nxx: Option<String> },
    Region(String),
}

fn search_kind(query: &SearchQuery) -> Result<Search, Error> {
    let p = query.prefix.as_str();
    if let Some(rest) = p.strip_prefix("+1").filter(|r| r.len() >= 3 && r.is_char_boundary(3)) {
        let npa = &rest[..3];
        if external::is_us_tollfree_npa(npa) {
            return Ok(Search::TollFree(npa.to_owned()));
        }
        let nxx = rest.get(3..6).filter(|_| rest.len() >= 6).map(str::to_owned);
        return Ok(Search::Npa { npa: npa.to_owned(), nxx });
    }
    if p.starts_with('+') {
        return Ok(Search::Region(query.country.clone()));
    }
    Err(super::not_available(KIND))
}

fn search_body(search: &Search, quantity: usize) -> Value {
    let (kind, descriptor) = match search {
        Search::Npa { npa, nxx: None } => (1, json!({"npa": npa})),
        Search::Npa { npa, nxx: Some(nxx) } => (1, json!({"npa": npa, "nxx": nxx})),
        Search::Region(country) => (2, json!({"country_iso": country})),
        Search::TollFree(prefix) => (3, json!({"prefix": prefix})),
    };
    json!({"search_type": kind, "search_descriptor": descriptor, "limit": quantity, "with_result": true})
}

fn row(number: &str, data: &Value) -> Option<FoundNumber> {
    let number = E164::new(number).ok()?;
    Some(FoundNumber {
        number,
        module: KIND,
        state: NumberState::Discovery,
        carrier_data: data.as_object().cloned().unwrap_or_default(),
    })
}

/// What `knm_telnyx` declares about itself (see [`CarrierSpec`]).
pub(crate) const SPEC: CarrierSpec = CarrierSpec {
    kind: CarrierKind::Telnyx,
    module_name: "knm_telnyx",
    is_local: false,
    is_billable: true,
    lookup_cnam: true,
    maximal_prefix_length: 3,
    config_section: Some(ConfigSection::of::<Telnyx>("telnyx")),
    carrier: &Telnyx,
};

#[async_trait]
impl ExternalCarrier for Telnyx {
    const KIND: CarrierKind = KIND;
    type Config = TelnyxConfig;

    fn read_config(section: &Section<'_>) -> Result<TelnyxConfig, Error> {
        TelnyxConfig::read(section)
    }

    async fn find(
        &self,
        query: &SearchQuery,
        config: &TelnyxConfig,
        ctx: &CarrierCtx<'_>,
    ) -> Result<Found, Error> {
        let search = search_kind(query)?;
        let rep = config
            .post(ctx, "number_searches", &query.prefix, &search_body(&search, query.quantity))
            .await?;
        let field =
            if matches!(search, Search::Region(_)) { "inexplicit_result" } else { "result" };
        let rows = match rep.get(field) {
            Some(Value::Array(rows)) => rows,
            None | Some(Value::Null) => return Ok(Found::Numbers(Vec::new())),
            Some(_) => {
                return Err(by_carrier(
                    KIND,
                    &query.prefix,
                    format!("malformed_response: {field} is not a list"),
                ))
            }
        };
        let found = match search {
            Search::Region(_) => {
                let dialcode = external::calling_code(&query.prefix).unwrap_or_default();
                rows.iter()
                    .filter_map(|d| {
                        let area = d.get("area_code")?.as_str().filter(|s| !s.is_empty())?;
                        // `ugly_hack/2`: dialcode ++ area code, right-padded with 0 to 9 chars.
                        let mut n = format!("+{dialcode}{area}");
                        while n.len() < 9 {
                            n.push('0');
                        }
                        row(&n, d)
                    })
                    .collect()
            }
            _ => rows.iter().filter_map(|d| row(d.get("number_e164")?.as_str()?, d)).collect(),
        };
        Ok(Found::Numbers(found))
    }

    async fn acquire(
        &self,
        mut doc: NumberDoc,
        config: &TelnyxConfig,
        ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        let number = doc.id.as_str().to_owned();
        if config.provisioning.skip_call(KIND, &number)? {
            return Ok(doc);
        }
        let body = json!({"requested_numbers": [number]});
        let rep = config.post(ctx, "number_orders", &number, &body).await?;
        match rep.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            Some(order_id) => {
                doc.carrier_data.insert("order_id".into(), Value::from(order_id));
                Ok(doc)
            }
            None => {
                let message = rep.get("message").and_then(Value::as_str).unwrap_or("no order id");
                Err(by_carrier(KIND, &number, message))
            }
        }
    }

    async fn disconnect(
        &self,
        doc: NumberDoc,
        config: &TelnyxConfig,
        _ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        config.provisioning.skip_call(KIND, doc.id.as_str())?;
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::carriers::external::testutil::{
        doc, fixture, numbers, slow_carrier_is_left_behind, Env,
    };
    use crate::carriers::Carrier;
    use wiremock::matchers::{body_partial_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn section(server: &MockServer) -> Value {
        json!({"default": {"base_url": format!("{}/origination", server.uri()),
                           "user": "telnyx-user", "token": "s3cret-token"}})
    }

    async fn answer(server: &MockServer, descriptor: Value, body: &str) {
        Mock::given(method("POST"))
            .and(path("/origination/number_searches"))
            .and(header("x-api-user", "telnyx-user"))
            .and(header("x-api-token", "s3cret-token"))
            .and(body_partial_json(json!({"search_descriptor": descriptor, "with_result": true})))
            .respond_with(
                ResponseTemplate::new(200).set_body_raw(body.to_owned(), "application/json"),
            )
            .mount(server)
            .await;
    }

    /// Vectors N6–N8: NPA(+NXX), toll-free and international searches, truncated to `limit`.
    #[tokio::test]
    async fn n6_n8_searches() {
        let server = MockServer::start().await;
        answer(&server, json!({"npa": "301", "nxx": "359"}), &fixture("telnyx_npa_search.json"))
            .await;
        answer(&server, json!({"prefix": "800"}), &fixture("telnyx_tollfree_search.json")).await;
        answer(&server, json!({"country_iso": "GB"}), &fixture("telnyx_international_search.json"))
            .await;
        let env = Env::new(section(&server));
        let ctx = env.ctx();

        let found = Telnyx.find_numbers(&SearchQuery::new("+1301359", 5), &ctx).await.unwrap();
        assert_eq!(found.rows().len(), 5);
        assert!(numbers(&found).iter().all(|n| n.starts_with("+1301359")));
        assert_eq!(found.rows()[0].state, NumberState::Discovery);
        assert_eq!(found.rows()[0].carrier_data["upfront_cost"], "1.00000");

        let found = Telnyx.find_numbers(&SearchQuery::new("+1800", 2), &ctx).await.unwrap();
        assert_eq!(found.rows().len(), 2);
        assert!(numbers(&found).iter().all(|n| n.starts_with("+1800")));

        let mut q = SearchQuery::new("+441", 2);
        q.country = "GB".into();
        let found = Telnyx.find_numbers(&q, &ctx).await.unwrap();
        assert_eq!(numbers(&found), ["+44163100", "+44143200"]);

        let requests = server.received_requests().await.unwrap();
        let first: Value = serde_json::from_slice(&requests[0].body).unwrap();
        assert_eq!(
            first,
            json!({"search_type": 1, "search_descriptor": {"npa": "301", "nxx": "359"},
                   "limit": 5, "with_result": true})
        );
        let second: Value = serde_json::from_slice(&requests[1].body).unwrap();
        assert_eq!(second["search_type"], 3);
        let third: Value = serde_json::from_slice(&requests[2].body).unwrap();
        assert_eq!(third["search_type"], 2);
    }

    /// Vector N9: the order id becomes `carrier_data.order_id`; the number is unchanged.
    #[tokio::test]
    async fn n9_acquire() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/origination/number_orders"))
            .and(body_partial_json(json!({"requested_numbers": ["+13013596695"]})))
            .respond_with(ResponseTemplate::new(200).set_body_string(fixture("telnyx_order.json")))
            .expect(1)
            .mount(&server)
            .await;
        let env = Env::new(section(&server));
        let got = Telnyx.acquire_number(doc("+13013596695", KIND), &env.ctx()).await.unwrap();
        assert_eq!(got.id.as_str(), "+13013596695");
        assert_eq!(got.carrier_data["order_id"], "411389090580137691");
    }

    /// An order without id (the carrier's `message` is logged, not rendered) and an HTTP 401:
    /// both `knm_errors` `by_carrier`; credentials appear in neither the error nor its JSON.
    #[tokio::test]
    async fn acquire_failures() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/origination/number_orders"))
            .and(body_partial_json(json!({"requested_numbers": ["+13013596695"]})))
            .respond_with(
                ResponseTemplate::new(200).set_body_string(r#"{"message":"Number not available"}"#),
            )
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/origination/number_orders"))
            .respond_with(
                ResponseTemplate::new(401).set_body_string(r#"{"message":"bad credentials"}"#),
            )
            .mount(&server)
            .await;
        let env = Env::new(section(&server));
        let err = Telnyx.acquire_number(doc("+13013596695", KIND), &env.ctx()).await.unwrap_err();
        assert!(
            matches!(&err, Error::ByCarrier { reason, number, .. }
                if reason == "Number not available" && number == "+13013596695"),
            "{err:?}"
        );
        assert_eq!(
            err.to_json(),
            json!({"code": 500, "error": "unspecified_fault", "cause": "+13013596695",
                   "message": "fault by carrier"})
        );
        let err = Telnyx.acquire_number(doc("+13013590340", KIND), &env.ctx()).await.unwrap_err();
        assert!(
            matches!(&err, Error::ByCarrier { reason, .. } if reason.starts_with("unauthenticated")),
            "{err:?}"
        );
        let shown = format!("{err} {err:?} {}", err.to_json());
        assert!(!shown.contains("s3cret-token") && !shown.contains("telnyx-user"), "{shown}");
        let config = env.config_of::<Telnyx>();
        assert!(!format!("{config:?}").contains("s3cret-token"));
    }

    /// Disconnect makes no call; the carrier provisioning switches of `number_manager.<carrier>` provisioning disabled: sandbox succeeds without a call,
    /// otherwise `provisioning_disabled`.
    #[tokio::test]
    async fn disconnect_and_provisioning_switches() {
        let server = MockServer::start().await;
        let mut s = section(&server);
        let env = Env::new(s.clone());
        let n = doc("+13013596695", KIND);
        assert_eq!(Telnyx.disconnect_number(n.clone(), &env.ctx()).await.unwrap(), n);

        s["default"]["enable_provisioning"] = json!(false);
        let env = Env::new(s.clone());
        let err = Telnyx.acquire_number(n.clone(), &env.ctx()).await.unwrap_err();
        assert_eq!(err.to_json()["message"], "provisioning_disabled");
        let err = Telnyx.disconnect_number(n.clone(), &env.ctx()).await.unwrap_err();
        assert_eq!(err.to_json()["message"], "provisioning_disabled");

        s["default"]["sandbox_provisioning"] = json!(true);
        let env = Env::new(s);
        assert_eq!(Telnyx.acquire_number(n.clone(), &env.ctx()).await.unwrap(), n);
        assert_eq!(Telnyx.disconnect_number(n.clone(), &env.ctx()).await.unwrap(), n);
        assert!(server.received_requests().await.unwrap().is_empty());
    }

    /// `knm_number_options:dry_run`: a dry run makes no request.
    #[tokio::test]
    async fn dry_run_makes_no_request() {
        let server = MockServer::start().await;
        let env = Env::new(section(&server));
        let ctx = env.ctx().with_dry_run(true);
        let n = doc("+13013596695", KIND);
        assert_eq!(KIND.acquire(n.clone(), &ctx).await.unwrap(), n);
        assert_eq!(KIND.disconnect(n.clone(), &ctx).await.unwrap(), n);
        assert!(server.received_requests().await.unwrap().is_empty());
    }

    /// A body that is not JSON, and a `result` that is not a list: clean errors.
    #[tokio::test]
    async fn malformed_answers() {
        let server = MockServer::start().await;
        answer(&server, json!({"npa": "301"}), "<html>oops</html>").await;
        answer(&server, json!({"npa": "302"}), r#"{"result": "nope", "limit": 5}"#).await;
        let env = Env::new(section(&server));
        let err = Telnyx.find_numbers(&SearchQuery::new("+1301", 5), &env.ctx()).await.unwrap_err();
        assert!(matches!(&err, Error::ByCarrier { reason, .. } if reason.starts_with("malformed")));
        let err = Telnyx.find_numbers(&SearchQuery::new("+1302", 5), &env.ctx()).await.unwrap_err();
        assert!(matches!(&err, Error::ByCarrier { reason, .. } if reason.starts_with("malformed")));
    }

    /// `request_timeout_ms` bounds a call.
    #[tokio::test]
    async fn request_timeout() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_string(fixture("telnyx_order.json"))
                    .set_delay(std::time::Duration::from_secs(30)),
            )
            .mount(&server)
            .await;
        let mut s = section(&server);
        s["default"]["request_timeout_ms"] = json!(200);
        let env = Env::new(s);
        let err = Telnyx.acquire_number(doc("+13013596695", KIND), &env.ctx()).await.unwrap_err();
        assert!(matches!(&err, Error::ByCarrier { reason, .. } if reason == "timeout"), "{err:?}");
    }

    /// `knm_search:find/1`: a slow Telnyx does not hold the search back.
    #[tokio::test]
    async fn slow_carrier() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_string(fixture("telnyx_npa_search.json"))
                    .set_delay(std::time::Duration::from_secs(30)),
            )
            .mount(&server)
            .await;
        slow_carrier_is_left_behind(KIND, section(&server)).await;
    }
}

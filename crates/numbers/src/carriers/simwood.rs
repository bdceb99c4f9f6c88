//! `knm_simwood` (`knm_simwood`): Simwood's numbers API v3 (`https://api.simwood.com/v3/numbers`, JSON,
//! HTTP basic auth) — `GET {account}/available/standard/{1|10|100}?pattern=P*`,
//! `PUT {account}/allocated/{number}` to buy and `DELETE` the same to give it back.
//!
//! Config `number_manager.simwood`: `simwood_account_id`, `auth_username`, `auth_password`
//! (credentials), `numbers_api_url` (default `https://api.simwood.com/v3/numbers`),
//! `request_timeout_ms` (30000). Simwood has no provisioning switches in Kazoo and gets none
//! here. Unlike Kazoo, a non-2xx answer to a purchase or release is a refusal (Kazoo counted any
//! HTTP reply as success), and found numbers get their `+`.

use async_trait::async_trait;
use e164::E164;
use serde_json::Value;

use super::external::{self, by_carrier, ExternalCarrier, Secret, Section};
use super::{CarrierCtx, CarrierKind, CarrierSpec, ConfigSection, Found, FoundNumber, SearchQuery};
use crate::doc::{NumberDoc, NumberState};
use crate::error::Error;

const KIND: CarrierKind = CarrierKind::Simwood;

/// The Simwood carrier module.
#[derive(Debug, Clone, Copy, Default)]
pub struct Simwood;

/// `number_manager.simwood`.
#[derive(Debug, Clone)]
pub struct SimwoodConfig {
    /// `numbers_api_url`.
    pub numbers_api_url: String,
    /// `simwood_account_id`.
    pub account_id: String,
    /// `auth_username`.
    pub username: Secret,
    /// `auth_password`.
    pub password: Secret,
    /// `request_timeout_ms`.
    pub timeout: std::time::Duration,
}

impl SimwoodConfig {
    /// Reads the section.
    ///
    /// # Errors
    /// [`Error::Config`] naming a key of the wrong type.
    fn read(s: &Section<'_>) -> Result<Self, Error> {
        Ok(SimwoodConfig {
            numbers_api_url: s.base_url("numbers_api_url", "https://api.simwood.com/v3/numbers")?,
            account_id: s.string_or("simwood_account_id", "")?,
            username: s.secret("auth_username")?,
            password: s.secret("auth_password")?,
            timeout: s.timeout()?,
        })
    }

    async fn call(
        &self,
        ctx: &CarrierCtx<'_>,
        number: &str,
        method: reqwest::Method,
        path: &str,
    ) -> Result<String, Error> {
        let url = format!("{}/{}/{path}", self.numbers_api_url, self.account_id);
        let req = external::client(ctx)
            .request(method, url)
            .basic_auth(self.username.expose(), Some(self.password.expose()));
        let reply = external::send(KIND, number, req, self.timeout).await?;
        map_error(number, reply.status, reply.body)
    }
}

/// The wire answer → `knm_errors`: a 2xx body is the answer; any other status is `by_carrier` with the
/// status and Simwood's `error` text (or the body) kept for the log.
fn map_error(number: &str, status: u16, body: String) -> Result<String, Error> {
    if (200..300).contains(&status) {
        return Ok(body);
    }
    let message = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect());
    Err(by_carrier(KIND, number, format!("http {status}: {message}")))
}

/// `sw_quantity/1`: Simwood searches 1, 10 or 100 numbers.
fn bucket(quantity: usize) -> &'static str {
    match quantity {
        0 | 1 => "1",
        2..=10 => "10",
        _ => "100",
    }
}

/// What `knm_simwood` declares about itself (see [`CarrierSpec`]).
pub(crate) const SPEC: CarrierSpec = CarrierSpec {
    kind: CarrierKind::Simwood,
    module_name: "knm_simwood",
    is_local: false,
    is_billable: true,
    lookup_cnam: true,
    maximal_prefix_length: 3,
    config_section: Some(ConfigSection::of::<Simwood>("simwood")),
    carrier: &Simwood,
};

#[async_trait]
impl ExternalCarrier for Simwood {
    const KIND: CarrierKind = KIND;
    type Config = SimwoodConfig;

    fn read_config(section: &Section<'_>) -> Result<SimwoodConfig, Error> {
        SimwoodConfig::read(section)
    }

    async fn find(
        &self,
        query: &SearchQuery,
        config: &SimwoodConfig,
        ctx: &CarrierCtx<'_>,
    ) -> Result<Found, Error> {
        let pattern = format!("{}*", query.prefix.trim_start_matches('+'));
        let path = format!("available/standard/{}?pattern={pattern}", bucket(query.quantity));
        let body = config.call(ctx, &query.prefix, reqwest::Method::GET, &path).await?;
        let Ok(Value::Array(items)) = serde_json::from_str::<Value>(&body) else {
            return Err(by_carrier(KIND, &query.prefix, "malformed_response: not a JSON list"));
        };
        let text = |v: Option<&Value>| match v {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let mut rows = Vec::new();
        for item in items {
            let (Some(cc), Some(n)) = (text(item.get("country_code")), text(item.get("number")))
            else {
                return Err(by_carrier(
                    KIND,
                    &query.prefix,
                    "malformed_response: a number without country_code/number",
                ));
            };
            if let Ok(number) = E164::new(format!("+{cc}{n}")) {
                rows.push(FoundNumber {
                    number,
                    module: KIND,
                    state: NumberState::Discovery,
                    carrier_data: item.as_object().cloned().unwrap_or_default(),
                });
            }
        }
        Ok(Found::Numbers(rows))
    }

    async fn acquire(
        &self,
        doc: NumberDoc,
        config: &SimwoodConfig,
        ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        let num = doc.id.digits().to_owned();
        config.call(ctx, &num, reqwest::Method::PUT, &format!("allocated/{num}")).await?;
        Ok(doc)
    }

    async fn disconnect(
        &self,
        doc: NumberDoc,
        config: &SimwoodConfig,
        ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        let num = doc.id.digits().to_owned();
        config.call(ctx, &num, reqwest::Method::DELETE, &format!("allocated/{num}")).await?;
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::carriers::external::testutil::{doc, slow_carrier_is_left_behind, Env};
    use crate::carriers::Carrier;
    use serde_json::json;
    use wiremock::matchers::{header_exists, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn section(server: &MockServer) -> Value {
        json!({"default": {"numbers_api_url": format!("{}/v3/numbers", server.uri()),
                           "simwood_account_id": "930000", "auth_username": "sw-user",
                           "auth_password": "sw-s3cret"}})
    }

    /// Simwood's available-numbers shape (no Kazoo fixture exists).
    fn available() -> Value {
        json!([
            {"country_code": "44", "number": "2031234567", "block": "20312345", "bill_class": "standard"},
            {"country_code": "44", "number": "2031234568", "block": "20312345", "bill_class": "standard"}
        ])
    }

    /// `knm_simwood` search: quantity buckets 1/10/100, `pattern=P*`, numbers `+` country code ++ number.
    #[tokio::test]
    async fn search() {
        let server = MockServer::start().await;
        for bucket in ["1", "10", "100"] {
            Mock::given(method("GET"))
                .and(path(format!("/v3/numbers/930000/available/standard/{bucket}")))
                .and(query_param("pattern", "44203*"))
                .and(header_exists("authorization"))
                .respond_with(ResponseTemplate::new(200).set_body_json(available()))
                .expect(1)
                .mount(&server)
                .await;
        }
        let env = Env::new(section(&server));
        for quantity in [1, 5, 50] {
            let got = Simwood
                .find_numbers(&SearchQuery::new("+44203", quantity), &env.ctx())
                .await
                .unwrap();
            let nums: Vec<&str> = got.rows().iter().map(|r| r.number.as_str()).collect();
            assert_eq!(nums, ["+442031234567", "+442031234568"]);
            assert_eq!(got.rows()[0].carrier_data["block"], "20312345");
        }
    }

    /// Buy (PUT) and give back (DELETE) `allocated/{number without +}`; a refusal is `by_carrier`.
    #[tokio::test]
    async fn acquire_disconnect_and_failure() {
        let server = MockServer::start().await;
        for verb in ["PUT", "DELETE"] {
            Mock::given(method(verb))
                .and(path("/v3/numbers/930000/allocated/442031234567"))
                .respond_with(
                    ResponseTemplate::new(200).set_body_json(json!({"country_code": "44"})),
                )
                .expect(1)
                .mount(&server)
                .await;
        }
        Mock::given(method("PUT"))
            .and(path("/v3/numbers/930000/allocated/442031234568"))
            .respond_with(
                ResponseTemplate::new(404).set_body_json(json!({"error": "Number not available"})),
            )
            .mount(&server)
            .await;
        let env = Env::new(section(&server));
        let n = doc("+442031234567", KIND);
        assert_eq!(Simwood.acquire_number(n.clone(), &env.ctx()).await.unwrap(), n);
        assert_eq!(Simwood.disconnect_number(n.clone(), &env.ctx()).await.unwrap(), n);
        let err = Simwood.acquire_number(doc("+442031234568", KIND), &env.ctx()).await.unwrap_err();
        assert!(
            matches!(&err, Error::ByCarrier { reason, number, .. }
                if reason == "http 404: Number not available" && number == "442031234568"),
            "{err:?}"
        );
        let shown = format!("{err} {err:?} {}", err.to_json());
        assert!(!shown.contains("sw-s3cret"));
        assert!(!format!("{:?}", env.config_of::<Simwood>()).contains("sw-s3cret"));
    }

    /// No provisioning switches for Simwood (they change nothing); a dry run makes no request.
    #[tokio::test]
    async fn provisioning_switches_and_dry_run() {
        let server = MockServer::start().await;
        let mut s = section(&server);
        s["default"]["enable_provisioning"] = json!(false);
        s["default"]["sandbox_provisioning"] = json!(true);
        let env = Env::new(s);
        let n = doc("+442031234567", KIND);
        let ctx = env.ctx().with_dry_run(true);
        assert_eq!(KIND.acquire(n.clone(), &ctx).await.unwrap(), n);
        assert_eq!(KIND.disconnect(n.clone(), &ctx).await.unwrap(), n);
        assert!(server.received_requests().await.unwrap().is_empty());
        Mock::given(method("DELETE"))
            .respond_with(ResponseTemplate::new(204))
            .expect(1)
            .mount(&server)
            .await;
        assert_eq!(Simwood.disconnect_number(n.clone(), &env.ctx()).await.unwrap(), n);
    }

    /// Not JSON, and entries without numbers: clean errors.
    #[tokio::test]
    async fn malformed_answers() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(query_param("pattern", "44203*"))
            .respond_with(ResponseTemplate::new(200).set_body_string("<html/>"))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(query_param("pattern", "44204*"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"number": 5}])))
            .mount(&server)
            .await;
        let env = Env::new(section(&server));
        for prefix in ["+44203", "+44204"] {
            let err =
                Simwood.find_numbers(&SearchQuery::new(prefix, 1), &env.ctx()).await.unwrap_err();
            assert!(
                matches!(&err, Error::ByCarrier { reason, .. } if reason.starts_with("malformed")),
                "{err:?}"
            );
        }
    }

    /// `knm_search:find/1`: a slow Simwood does not hold the search back.
    #[tokio::test]
    async fn slow_carrier() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(available())
                    .set_delay(std::time::Duration::from_secs(30)),
            )
            .mount(&server)
            .await;
        slow_carrier_is_left_behind(KIND, section(&server)).await;
    }
}

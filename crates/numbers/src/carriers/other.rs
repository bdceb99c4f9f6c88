//! `knm_other` (`knm_other`): an operator's own "phonebook" JSON API at `phonebook_url` —
//! `GET numbers/{country}/search`, `GET blocks/{country}/search` (ranges, returned as bulk
//! results), `PUT numbers/{country}/order`, `POST numbers/{country}/status`; answers are
//! `{"status": "success", "data": …}`.
//!
//! Config `number_manager.other`: `phonebook_url` (no default: search is `not_available` and
//! buying is `missing_provider_url` without it; it is also how tests point the module at a
//! mock), `default_country` (`US`), `endpoints` (string or list, sent as the order's
//! `gateways`), `request_timeout_ms` (30000). The phonebook takes no credentials. Disconnect
//! makes no call (Kazoo's neither).

use std::collections::BTreeMap;

use async_trait::async_trait;
use e164::E164;
use serde_json::{json, Map, Value};

use super::external::{self, by_carrier, ExternalCarrier, Section};
use super::{CarrierCtx, CarrierKind, CarrierSpec, ConfigSection, Found, FoundNumber, SearchQuery};
use crate::doc::{NumberDoc, NumberState};
use crate::error::Error;

const KIND: CarrierKind = CarrierKind::Other;

/// The phonebook carrier module.
#[derive(Debug, Clone, Copy, Default)]
pub struct Other;

/// `number_manager.other`.
#[derive(Debug, Clone)]
pub struct OtherConfig {
    /// `phonebook_url`.
    pub phonebook_url: Option<String>,
    /// `default_country`.
    pub country: String,
    /// `endpoints`.
    pub endpoints: Vec<String>,
    /// `request_timeout_ms`.
    pub timeout: std::time::Duration,
}

impl OtherConfig {
    /// Reads the section.
    ///
    /// # Errors
    /// [`Error::Config`] naming a key of the wrong type.
    fn read(s: &Section<'_>) -> Result<Self, Error> {
        let phonebook_url = match s.string("phonebook_url")? {
            Some(_) => Some(s.base_url("phonebook_url", "")?),
            None => None,
        };
        Ok(OtherConfig {
            phonebook_url,
            country: s.string_or("default_country", "US")?,
            endpoints: s.strings("endpoints")?,
            timeout: s.timeout()?,
        })
    }

    fn url(&self, base: &str, what: &str) -> String {
        format!("{base}/{what}/{}/", self.country)
    }
}

/// The wire answer → `knm_errors`: a 200 JSON object whose `status` is `success` gives its `data`;
/// anything else is `by_carrier` (`failed` is the reason for the log: the HTTP status, the
/// phonebook's `status`/`message`, or `malformed_response`).
fn map_error(number: &str, failed: &str, status: u16, body: &str) -> Result<Value, Error> {
    let parsed: Option<Map<String, Value>> = serde_json::from_str(body).ok();
    if status != 200 {
        let message = parsed
            .as_ref()
            .and_then(|m| m.get("message").and_then(Value::as_str))
            .unwrap_or_default();
        return Err(by_carrier(KIND, number, format!("{failed}: http {status} {message}")));
    }
    let Some(mut obj) = parsed else {
        return Err(by_carrier(KIND, number, format!("{failed}: malformed_response")));
    };
    match obj.get("status").and_then(Value::as_str) {
        Some("success") => Ok(obj.remove("data").unwrap_or(Value::Null)),
        other => Err(by_carrier(
            KIND,
            number,
            format!("{failed}: status {}", other.unwrap_or("missing")),
        )),
    }
}

fn found(number: &str, data: Map<String, Value>) -> Option<FoundNumber> {
    Some(FoundNumber {
        number: E164::new(number).ok()?,
        module: KIND,
        state: NumberState::Discovery,
        carrier_data: data,
    })
}

/// What `knm_other` declares about itself (see [`CarrierSpec`]).
pub(crate) const SPEC: CarrierSpec = CarrierSpec {
    kind: CarrierKind::Other,
    module_name: "knm_other",
    is_local: false,
    is_billable: true,
    lookup_cnam: true,
    maximal_prefix_length: 10,
    config_section: Some(ConfigSection::of::<Other>("other")),
    carrier: &Other,
};

#[async_trait]
impl ExternalCarrier for Other {
    const KIND: CarrierKind = KIND;
    type Config = OtherConfig;

    fn read_config(section: &Section<'_>) -> Result<OtherConfig, Error> {
        OtherConfig::read(section)
    }

    async fn find(
        &self,
        query: &SearchQuery,
        config: &OtherConfig,
        ctx: &CarrierCtx<'_>,
    ) -> Result<Found, Error> {
        let Some(base) = config.phonebook_url.as_deref() else {
            return Err(super::not_available(KIND));
        };
        let client = external::client(ctx);
        let (q, o) = (query.quantity.to_string(), query.offset.to_string());
        let p = query.prefix.as_str();
        let req = if query.blocks {
            let url = format!("{}search", config.url(base, "blocks"));
            client.get(url).query(&[("prefix", p), ("size", &q), ("offset", &o), ("limit", &q)])
        } else {
            let url = format!("{}search", config.url(base, "numbers"));
            client.get(url).query(&[("prefix", p), ("limit", &q), ("offset", &o)])
        };
        let reply = external::send(KIND, p, req, config.timeout).await?;
        let data = map_error(p, "lookup_failed", reply.status, &reply.body)?;
        let malformed = || by_carrier(KIND, p, "malformed_response: unexpected data");
        if query.blocks {
            let Value::Array(blocks) = data else { return Err(malformed()) };
            let mut rows = Vec::new();
            for block in blocks {
                let Value::Object(b) = block else { return Err(malformed()) };
                for key in ["start_number", "end_number"] {
                    let n = b.get(key).and_then(Value::as_str).ok_or_else(malformed)?;
                    rows.extend(found(n, b.clone()));
                }
            }
            Ok(Found::Bulk(rows))
        } else {
            let Value::Object(numbers) = data else { return Err(malformed()) };
            let rows = numbers
                .into_iter()
                .filter_map(|(n, d)| found(&n, d.as_object().cloned().unwrap_or_default()))
                .collect();
            Ok(Found::Numbers(rows))
        }
    }

    async fn acquire(
        &self,
        mut doc: NumberDoc,
        config: &OtherConfig,
        ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        let number = doc.id.as_str().to_owned();
        let Some(base) = config.phonebook_url.as_deref() else {
            return Err(Error::Unspecified {
                reason: "missing_provider_url".into(),
                cause: Some(number),
            });
        };
        let body = json!({"data": {"numbers": [number], "gateways": config.endpoints}});
        let req =
            external::client(ctx).put(format!("{}order", config.url(base, "numbers"))).json(&body);
        let reply = external::send(KIND, &number, req, config.timeout).await?;
        let data = map_error(&number, "lookup_failed", reply.status, &reply.body)?;
        let entry = data.get(&number).cloned().unwrap_or(Value::Null);
        if entry.get("status").and_then(Value::as_str) != Some("success") {
            return Err(by_carrier(KIND, &number, "lookup_resp_error"));
        }
        match entry.get("opaque") {
            Some(Value::Object(o)) if !o.is_empty() => doc.carrier_data = o.clone(),
            _ => {}
        }
        match entry.get("locality") {
            None | Some(Value::Null) => {}
            Some(Value::Object(o)) if o.is_empty() => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(locality) => {
                doc.features.insert("locality".into(), locality.clone());
            }
        }
        Ok(doc)
    }

    async fn check(
        &self,
        numbers: &[E164],
        config: &OtherConfig,
        ctx: &CarrierCtx<'_>,
    ) -> Result<BTreeMap<String, String>, Error> {
        let Some(base) = config.phonebook_url.as_deref() else {
            return Err(super::not_available(KIND));
        };
        let npans: Vec<&str> = numbers.iter().map(|n| external::to_npan(n.as_str())).collect();
        let req = external::client(ctx)
            .post(format!("{}status", config.url(base, "numbers")))
            .json(&json!({"data": npans}));
        let reply = external::send(KIND, "", req, config.timeout).await?;
        let data = map_error("", "check_failed", reply.status, &reply.body)?;
        let Value::Array(rows) = data else {
            return Err(by_carrier(KIND, "", "malformed_response: unexpected data"));
        };
        Ok(rows
            .iter()
            .filter_map(|r| {
                let n = r.get("number")?.as_str()?;
                let s = r.get("status")?.as_str()?;
                Some((n.to_owned(), s.to_owned()))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::carriers::external::testutil::{doc, slow_carrier_is_left_behind, Env};
    use crate::carriers::Carrier;
    use crate::search::{find, CarrierOutcome};
    use wiremock::matchers::{body_json, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn section(server: &MockServer) -> Value {
        json!({"default": {"phonebook_url": server.uri(), "endpoints": "10.0.0.1"}})
    }

    /// The numbers body of Kazoo's `knm_carriers_find_tests` (N4): `+1415886790<d>` → `{extension: d}`.
    fn numbers_body() -> Value {
        let data: Map<String, Value> =
            (0..10).map(|d| (format!("+1415886790{d}"), json!({"extension": d}))).collect();
        json!({"status": "success", "data": data})
    }

    /// Vectors N2, N4, N5: no phonebook → nothing; numbers; blocks as bulk `[start, end]`.
    #[tokio::test]
    async fn n2_n4_n5_searches() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/numbers/US/search"))
            .and(query_param("prefix", "+1415"))
            .and(query_param("limit", "10"))
            .and(query_param("offset", "0"))
            .respond_with(ResponseTemplate::new(200).set_body_json(numbers_body()))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/blocks/US/search"))
            .and(query_param("size", "10"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "success",
                "data": [{"start_number": "+14158867900", "end_number": "+14158897909"}]})))
            .mount(&server)
            .await;
        let env = Env::new(Value::Null);
        let res = find(&[KIND], &SearchQuery::new("+1415", 10), &env.ctx()).await;
        assert!(res.rows.is_empty());
        assert!(matches!(
            res.reports[0].outcome,
            CarrierOutcome::Failed(Error::NotAvailable { .. })
        ));

        let env = Env::new(section(&server));
        let got = Other.find_numbers(&SearchQuery::new("+1415", 10), &env.ctx()).await.unwrap();
        let nums: Vec<String> = got.rows().iter().map(|r| r.number.as_str().to_owned()).collect();
        let want: Vec<String> = (0..10).map(|d| format!("+1415886790{d}")).collect();
        assert_eq!(nums, want);
        assert!(matches!(got, Found::Numbers(_)));
        assert_eq!(got.rows()[3].carrier_data["extension"], 3);

        let mut q = SearchQuery::new("+1415", 10);
        q.blocks = true;
        let got = Other.find_numbers(&q, &env.ctx()).await.unwrap();
        assert!(matches!(got, Found::Bulk(_)));
        let nums: Vec<&str> = got.rows().iter().map(|r| r.number.as_str()).collect();
        assert_eq!(nums, ["+14158867900", "+14158897909"]);
    }

    /// `knm_other` acquire: the order carries the number and the gateways; `opaque` becomes the carrier
    /// data and `locality` a feature.
    #[tokio::test]
    async fn acquire_success() {
        let server = MockServer::start().await;
        Mock::given(method("PUT"))
            .and(path("/numbers/US/order"))
            .and(body_json(
                json!({"data": {"numbers": ["+14158867900"], "gateways": ["10.0.0.1"]}}),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "success",
                "data": {"+14158867900": {"status": "success", "opaque": {"ref": "A1"},
                                          "locality": {"city": "San Francisco"}}}})))
            .expect(1)
            .mount(&server)
            .await;
        let env = Env::new(section(&server));
        let got = Other.acquire_number(doc("+14158867900", KIND), &env.ctx()).await.unwrap();
        assert_eq!(Value::Object(got.carrier_data), json!({"ref": "A1"}));
        assert_eq!(got.features["locality"], json!({"city": "San Francisco"}));
    }

    /// Non-200 (`lookup_failed`), a per-number failure (`lookup_resp_error`), no phonebook
    /// (`missing_provider_url`); a dry run and disconnect make no request.
    #[tokio::test]
    async fn acquire_failures_disconnect_dry_run() {
        let server = MockServer::start().await;
        Mock::given(method("PUT"))
            .and(body_json(
                json!({"data": {"numbers": ["+14158867901"], "gateways": ["10.0.0.1"]}}),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "success",
                "data": {"+14158867901": {"status": "error"}}})))
            .mount(&server)
            .await;
        let env = Env::new(section(&server));
        let n = doc("+14158867900", KIND);
        let ctx = env.ctx().with_dry_run(true);
        assert_eq!(KIND.acquire(n.clone(), &ctx).await.unwrap(), n);
        assert_eq!(Other.disconnect_number(n.clone(), &env.ctx()).await.unwrap(), n);
        // provisioning switches do not exist for knm_other: a disabled one changes nothing
        let mut s = section(&server);
        s["default"]["enable_provisioning"] = json!(false);
        let env_disabled = Env::new(s);
        assert_eq!(Other.disconnect_number(n.clone(), &env_disabled.ctx()).await.unwrap(), n);
        assert!(server.received_requests().await.unwrap().is_empty());

        Mock::given(method("PUT"))
            .respond_with(
                ResponseTemplate::new(404).set_body_string("{\"message\": \"no such number\"}"),
            )
            .mount(&server)
            .await;
        let err = Other.acquire_number(n.clone(), &env.ctx()).await.unwrap_err();
        assert!(
            matches!(&err, Error::ByCarrier { reason, .. } if reason.starts_with("lookup_failed")),
            "{err:?}"
        );
        assert_eq!(err.to_json()["message"], "fault by carrier");
        let err = Other.acquire_number(doc("+14158867901", KIND), &env.ctx()).await.unwrap_err();
        assert!(
            matches!(&err, Error::ByCarrier { reason, .. } if reason == "lookup_resp_error"),
            "{err:?}"
        );
        let env = Env::new(Value::Null);
        let err = Other.acquire_number(n, &env.ctx()).await.unwrap_err();
        assert_eq!(
            err.to_json(),
            json!({"code": 500, "error": "unspecified_fault", "cause": "+14158867900",
                   "message": "missing_provider_url"})
        );
    }

    /// `knm_carriers:check/1`: check through the phonebook.
    #[tokio::test]
    async fn check() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/numbers/US/status"))
            .and(body_json(json!({"data": ["4158867900"]})))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "success",
                "data": [{"number": "+14158867900", "status": "in_service"}]})))
            .mount(&server)
            .await;
        let env = Env::new(section(&server));
        let got =
            Other.check_numbers(&[E164::new("+14158867900").unwrap()], &env.ctx()).await.unwrap();
        assert_eq!(got["+14158867900"], "in_service");
    }

    /// Not JSON, a non-success status, data of the wrong shape: clean errors.
    #[tokio::test]
    async fn malformed_answers() {
        let server = MockServer::start().await;
        for (prefix, body) in [
            ("+1415", "<html/>".to_owned()),
            ("+1416", json!({"status": "error"}).to_string()),
            ("+1417", json!({"status": "success", "data": [1, 2]}).to_string()),
        ] {
            Mock::given(method("GET"))
                .and(query_param("prefix", prefix))
                .respond_with(ResponseTemplate::new(200).set_body_string(body))
                .mount(&server)
                .await;
        }
        let env = Env::new(section(&server));
        for prefix in ["+1415", "+1416", "+1417"] {
            let err =
                Other.find_numbers(&SearchQuery::new(prefix, 5), &env.ctx()).await.unwrap_err();
            assert!(matches!(err, Error::ByCarrier { .. }), "{prefix}: {err:?}");
        }
    }

    /// `knm_search:find/1`: a slow phonebook does not hold the search back.
    #[tokio::test]
    async fn slow_carrier() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(numbers_body())
                    .set_delay(std::time::Duration::from_secs(30)),
            )
            .mount(&server)
            .await;
        slow_carrier_is_left_behind(KIND, section(&server)).await;
    }
}

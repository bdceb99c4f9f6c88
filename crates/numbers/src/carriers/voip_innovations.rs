//! `knm_voip_innovations` (`knm_voip_innovations`): VoIP Innovations' SOAP 1.1 web service
//! (`https://backoffice.voipinnovations.com/Services/APIService.asmx`, namespace
//! `http://tempuri.org/`, header `SOAPAction: http://tempuri.org/<op>`) — `getDIDs`, `assignDID`,
//! `releaseDID`; success is `responseCode` 100, per DID `statusCode` 100.
//!
//! Config `number_manager.voip_innovations`: `login`, `password` (credentials, sent as
//! `tns:login` / `tns:secret`), `endpoint_group` (sent as `tns:epg` when buying),
//! `enable_provisioning` (true), `sandbox_provisioning` (false; when true and provisioning is
//! enabled, calls go to the sandbox `http://dev.voipinnovations.com/VOIP/Services/APIService.asmx`),
//! `api_url` (overrides either URL), `request_timeout_ms` (30000). TLS is verified (Kazoo does
//! not verify it for this carrier).

use async_trait::async_trait;
use e164::E164;
use serde_json::{Map, Value};

use super::external::{
    self, by_carrier, xml_escape, Element, ExternalCarrier, Provisioning, Secret, Section,
};
use super::{CarrierCtx, CarrierKind, CarrierSpec, ConfigSection, Found, FoundNumber, SearchQuery};
use crate::doc::{NumberDoc, NumberState};
use crate::error::Error;

const KIND: CarrierKind = CarrierKind::VoipInnovations;
const NAMESPACE: &str = "http://tempuri.org/";
const URL: &str = "https://backoffice.voipinnovations.com/Services/APIService.asmx";
const SANDBOX_URL: &str = "http://dev.voipinnovations.com/VOIP/Services/APIService.asmx";
const API_SUCCESS: &str = "100";

/// The VoIP Innovations carrier module.
#[derive(Debug, Clone, Copy, Default)]
pub struct VoipInnovations;

/// `number_manager.voip_innovations`.
#[derive(Debug, Clone)]
pub struct VoipInnovationsConfig {
    /// The service URL in use.
    pub url: String,
    /// `login`.
    pub login: Secret,
    /// `password`.
    pub password: Secret,
    /// `endpoint_group`.
    pub endpoint_group: String,
    provisioning: Provisioning,
    /// `request_timeout_ms`.
    pub timeout: std::time::Duration,
}

impl VoipInnovationsConfig {
    /// Reads the section.
    ///
    /// # Errors
    /// [`Error::Config`] naming a key of the wrong type.
    fn read(s: &Section<'_>) -> Result<Self, Error> {
        let provisioning = Provisioning::read(s, false)?;
        let default_url = if provisioning.sandbox { SANDBOX_URL } else { URL };
        Ok(VoipInnovationsConfig {
            url: s.base_url("api_url", default_url)?,
            login: s.secret("login")?,
            password: s.secret("password")?,
            endpoint_group: s.string_or("endpoint_group", "")?,
            provisioning,
            timeout: s.timeout()?,
        })
    }

    /// `soap(Action, Body)`: the verified answer (`responseCode` 100).
    async fn soap(
        &self,
        ctx: &CarrierCtx<'_>,
        number: &str,
        action: &str,
        params: &str,
    ) -> Result<Element, Error> {
        let envelope = format!(
            "<?xml version='1.0' encoding='UTF-8'?>\
             <env:Envelope xmlns:xsd='http://www.w3.org/2001/XMLSchema' \
             xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance' \
             xmlns:tns='{NAMESPACE}' xmlns:env='http://schemas.xmlsoap.org/soap/envelope/'>\
             <env:Body><tns:{action}>{params}<tns:login>{}</tns:login>\
             <tns:secret>{}</tns:secret></tns:{action}></env:Body></env:Envelope>",
            xml_escape(self.login.expose()),
            xml_escape(self.password.expose()),
        );
        let req = external::client(ctx)
            .post(&self.url)
            .header("SOAPAction", format!("{NAMESPACE}{action}"))
            .header("Accept", "*/*")
            .header("Content-Type", "text/xml;charset=UTF-8")
            .body(envelope);
        let reply = external::send(KIND, number, req, self.timeout).await?;
        map_error(number, reply.status, &reply.body)
    }
}

/// The wire answer → `knm_errors` (`handle_response/1`, `verify_response/1`): an XML body whose
/// `responseCode` is 100 is the answer; another code is `by_carrier` with `responseMessage`; a
/// non-XML body is `by_carrier` with Kazoo's status reason (`unauthenticated`, `unauthorized`,
/// `not_found`, `server_error`, `empty_response`); XML that does not parse is `empty_response`.
fn map_error(number: &str, status: u16, body: &str) -> Result<Element, Error> {
    if !body.trim_start().starts_with("<?xml") {
        let reason = match status {
            401 => "unauthenticated",
            403 => "unauthorized",
            404 => "not_found",
            s if s >= 500 => "server_error",
            _ => "empty_response",
        };
        return Err(by_carrier(KIND, number, reason));
    }
    let root = Element::parse(body)
        .map_err(|e| by_carrier(KIND, number, format!("empty_response: malformed XML: {e}")))?;
    let code = root.find("responseCode").map(|e| e.text.as_str()).unwrap_or_default();
    if code == API_SUCCESS {
        Ok(root)
    } else {
        let msg =
            root.find("responseMessage").map(|e| e.text.as_str()).unwrap_or("no responseCode");
        Err(by_carrier(KIND, number, msg))
    }
}

/// `'remove +1'/1`: a leading `+` and `1`s removed.
fn remove_plus1(number: &str) -> &str {
    number.trim_start_matches('+').trim_start_matches('1')
}

/// The one `<DID>` of an `assignDID` / `releaseDID` answer; `statusCode` 100 or `by_carrier` with
/// its `status` text.
fn did_status(root: &Element, action: &str, number: &str) -> Result<(), Error> {
    let result = root.find(&format!("{action}Result"));
    let dids: Vec<&Element> = result
        .and_then(|r| r.child("DIDs"))
        .map(|d| d.children_named("DID").collect())
        .unwrap_or_default();
    let [did] = dids.as_slice() else {
        return Err(by_carrier(
            KIND,
            number,
            format!("malformed_response: {} DID elements", dids.len()),
        ));
    };
    match did.child_text("statusCode") {
        Some(API_SUCCESS) => Ok(()),
        _ => Err(by_carrier(KIND, number, did.child_text("status").unwrap_or("unknown status"))),
    }
}

/// What `knm_voip_innovations` declares about itself (see [`CarrierSpec`]).
pub(crate) const SPEC: CarrierSpec = CarrierSpec {
    kind: CarrierKind::VoipInnovations,
    module_name: "knm_voip_innovations",
    is_local: false,
    is_billable: true,
    lookup_cnam: true,
    maximal_prefix_length: 3,
    config_section: Some(ConfigSection::of::<VoipInnovations>("voip_innovations")),
    carrier: &VoipInnovations,
};

#[async_trait]
impl ExternalCarrier for VoipInnovations {
    const KIND: CarrierKind = KIND;
    type Config = VoipInnovationsConfig;

    fn read_config(section: &Section<'_>) -> Result<VoipInnovationsConfig, Error> {
        VoipInnovationsConfig::read(section)
    }

    async fn find(
        &self,
        query: &SearchQuery,
        config: &VoipInnovationsConfig,
        ctx: &CarrierCtx<'_>,
    ) -> Result<Found, Error> {
        if !query.prefix.starts_with("+1") {
            return Err(super::not_available(KIND));
        }
        let digits = remove_plus1(&query.prefix);
        let (key, value) = match digits.len() {
            3 => ("npa", digits),
            n if n >= 6 => ("nxx", &digits[..6]),
            _ => return Err(super::not_available(KIND)),
        };
        let params: String = ["cnam", "lata", "npa", "nxx", "rateCenter", "state", "t38", "tier"]
            .iter()
            .map(|k| {
                if *k == key {
                    format!("<tns:{k}>{}</tns:{k}>", xml_escape(value))
                } else {
                    format!("<tns:{k} xsi:nil='true'/>")
                }
            })
            .collect();
        let root = config.soap(ctx, &query.prefix, "getDIDs", &params).await?;
        let locators = root
            .find("getDIDsResult")
            .and_then(|r| r.child("DIDLocators"))
            .map(|l| l.children_named("DIDLocator").collect::<Vec<_>>())
            .unwrap_or_default();
        let rows = locators
            .into_iter()
            .take(query.quantity)
            .filter_map(|did| {
                let number = E164::new(format!("+1{}", did.child_text("tn")?)).ok()?;
                let mut data = Map::new();
                data.insert("e164".into(), Value::from(number.as_str()));
                for (key, field) in [("rate_center", "rateCenter"), ("state", "state")] {
                    if let Some(v) = did.child_text(field) {
                        data.insert(key.into(), Value::from(v));
                    }
                }
                data.insert(
                    "cnam".into(),
                    Value::from(did.child_text("outboundCNAM") == Some("true")),
                );
                data.insert("t38".into(), Value::from(did.child_text("t38") == Some("true")));
                Some(FoundNumber {
                    number,
                    module: KIND,
                    state: NumberState::Discovery,
                    carrier_data: data,
                })
            })
            .collect();
        Ok(Found::Numbers(rows))
    }

    async fn acquire(
        &self,
        doc: NumberDoc,
        config: &VoipInnovationsConfig,
        ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        let number = doc.id.as_str();
        if config.provisioning.skip_call(KIND, number)? {
            return Ok(doc);
        }
        let params = format!(
            "<tns:didParams><tns:DIDParam><tns:tn>{}</tns:tn><tns:epg>{}</tns:epg>\
             </tns:DIDParam></tns:didParams>",
            xml_escape(remove_plus1(number)),
            xml_escape(&config.endpoint_group)
        );
        let root = config.soap(ctx, number, "assignDID", &params).await?;
        did_status(&root, "assignDID", number)?;
        Ok(doc)
    }

    async fn disconnect(
        &self,
        doc: NumberDoc,
        config: &VoipInnovationsConfig,
        ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        let number = doc.id.as_str();
        if config.provisioning.skip_call(KIND, number)? {
            return Ok(doc);
        }
        let params = format!(
            "<tns:didParams><tns:DIDParam><tns:tn>{}</tns:tn></tns:DIDParam></tns:didParams>",
            xml_escape(remove_plus1(number))
        );
        let root = config.soap(ctx, number, "releaseDID", &params).await?;
        did_status(&root, "releaseDID", number)?;
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
    use serde_json::json;
    use wiremock::matchers::{body_string_contains, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn section(server: &MockServer) -> Value {
        json!({"default": {"api_url": format!("{}/Services/APIService.asmx", server.uri()),
                           "login": "vi-login", "password": "vi-s3cret", "endpoint_group": "8674"}})
    }

    async fn answer(server: &MockServer, action: &str, needle: &str, body: String) {
        Mock::given(method("POST"))
            .and(path("/Services/APIService.asmx"))
            .and(header("SOAPAction", format!("http://tempuri.org/{action}").as_str()))
            .and(body_string_contains(format!("<tns:{action}>")))
            .and(body_string_contains(
                "<tns:login>vi-login</tns:login><tns:secret>vi-s3cret</tns:secret>",
            ))
            .and(body_string_contains(needle))
            .respond_with(ResponseTemplate::new(200).set_body_string(body))
            .mount(server)
            .await;
    }

    /// Vectors N13–N14 and the NPA-NXX form.
    #[tokio::test]
    async fn n13_n14_searches() {
        let server = MockServer::start().await;
        answer(
            &server,
            "getDIDs",
            "<tns:npa>435</tns:npa>",
            fixture("voip_innovations_get_response.xml"),
        )
        .await;
        answer(
            &server,
            "getDIDs",
            "<tns:npa>877</tns:npa>",
            fixture("voip_innovations_get_tollfree_response.xml"),
        )
        .await;
        answer(
            &server,
            "getDIDs",
            "<tns:nxx>435201</tns:nxx>",
            fixture("voip_innovations_get_response.xml"),
        )
        .await;
        let env = Env::new(section(&server));
        let ctx = env.ctx();
        let found =
            VoipInnovations.find_numbers(&SearchQuery::new("+1435", 2), &ctx).await.unwrap();
        assert_eq!(numbers(&found), ["+14352016526", "+14352016527"]);
        assert_eq!(
            Value::Object(found.rows()[0].carrier_data.clone()),
            json!({"e164": "+14352016526", "rate_center": "RICHFIELD", "state": "UT",
                   "cnam": true, "t38": true})
        );
        let found =
            VoipInnovations.find_numbers(&SearchQuery::new("+1877", 1), &ctx).await.unwrap();
        assert_eq!(numbers(&found), ["+18772207304"]);
        let found =
            VoipInnovations.find_numbers(&SearchQuery::new("+14352016", 5), &ctx).await.unwrap();
        assert_eq!(found.rows().len(), 3);
        let body =
            String::from_utf8(server.received_requests().await.unwrap()[0].body.clone()).unwrap();
        assert!(
            body.contains("<tns:nxx xsi:nil='true'/>")
                && body.contains("<tns:cnam xsi:nil='true'/>"),
            "{body}"
        );
    }

    /// Vectors N15–N16: assign succeeds; release of a free number is `by_carrier`
    /// `Number currently available` → 500 `unspecified_fault`.
    #[tokio::test]
    async fn n15_n16_acquire_and_disconnect() {
        let server = MockServer::start().await;
        answer(
            &server,
            "assignDID",
            "<tns:tn>4352154006</tns:tn><tns:epg>8674</tns:epg>",
            fixture("voip_innovations_assign_response.xml"),
        )
        .await;
        answer(
            &server,
            "releaseDID",
            "<tns:tn>4352154974</tns:tn>",
            fixture("voip_innovations_release_response.xml"),
        )
        .await;
        let released = fixture("voip_innovations_release_response.xml")
            .replace("4352154974", "4352154006")
            .replace("<statusCode>106231</statusCode>", "<statusCode>100</statusCode>");
        answer(&server, "releaseDID", "<tns:tn>4352154006</tns:tn>", released).await;
        let env = Env::new(section(&server));
        let n = doc("+14352154006", KIND);
        assert_eq!(VoipInnovations.acquire_number(n.clone(), &env.ctx()).await.unwrap(), n);
        assert_eq!(VoipInnovations.disconnect_number(n.clone(), &env.ctx()).await.unwrap(), n);
        let err = VoipInnovations
            .disconnect_number(doc("+14352154974", KIND), &env.ctx())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::ByCarrier { reason, .. } if reason == "Number currently available"),
            "{err:?}"
        );
        assert_eq!(
            err.to_json(),
            json!({"code": 500, "error": "unspecified_fault", "cause": "+14352154974",
                   "message": "fault by carrier"})
        );
    }

    /// A failed `responseCode` and an HTTP 500 without XML: `by_carrier`, no credentials shown.
    #[tokio::test]
    async fn acquire_failure() {
        let server = MockServer::start().await;
        let refused = fixture("voip_innovations_assign_response.xml")
            .replace("<responseCode>100</responseCode>", "<responseCode>200</responseCode>")
            .replace("<responseMessage>Success", "<responseMessage>Invalid login");
        answer(&server, "assignDID", "<tns:tn>4352154006</tns:tn>", refused).await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(500).set_body_string("Server Error"))
            .mount(&server)
            .await;
        let env = Env::new(section(&server));
        let err = VoipInnovations
            .acquire_number(doc("+14352154006", KIND), &env.ctx())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::ByCarrier { reason, .. } if reason == "Invalid login"),
            "{err:?}"
        );
        let err = VoipInnovations
            .acquire_number(doc("+14352150000", KIND), &env.ctx())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::ByCarrier { reason, .. } if reason == "server_error"),
            "{err:?}"
        );
        let shown = format!("{err} {err:?} {}", err.to_json());
        assert!(!shown.contains("vi-s3cret"));
        let config = env.config_of::<VoipInnovations>();
        assert!(!format!("{config:?}").contains("vi-s3cret"));
    }

    /// the carrier provisioning switches of `number_manager.<carrier>`: provisioning disabled (sandbox: no call; otherwise `provisioning_disabled`); a dry
    /// run makes no request; the sandbox URL is used when sandbox provisioning is on.
    #[tokio::test]
    async fn provisioning_switches_and_dry_run() {
        let server = MockServer::start().await;
        let mut s = section(&server);
        let n = doc("+14352154006", KIND);
        let env = Env::new(s.clone());
        let ctx = env.ctx().with_dry_run(true);
        assert_eq!(KIND.acquire(n.clone(), &ctx).await.unwrap(), n);
        assert_eq!(KIND.disconnect(n.clone(), &ctx).await.unwrap(), n);
        s["default"]["enable_provisioning"] = json!(false);
        let env = Env::new(s.clone());
        for err in [
            VoipInnovations.acquire_number(n.clone(), &env.ctx()).await.unwrap_err(),
            VoipInnovations.disconnect_number(n.clone(), &env.ctx()).await.unwrap_err(),
        ] {
            assert_eq!(err.to_json()["message"], "provisioning_disabled");
        }
        s["default"]["sandbox_provisioning"] = json!(true);
        let env = Env::new(s.clone());
        assert_eq!(VoipInnovations.acquire_number(n.clone(), &env.ctx()).await.unwrap(), n);
        assert_eq!(VoipInnovations.disconnect_number(n.clone(), &env.ctx()).await.unwrap(), n);
        assert!(server.received_requests().await.unwrap().is_empty());
        let sandbox = json!({"sandbox_provisioning": true});
        let env = Env::new(sandbox);
        assert_eq!(env.config_of::<VoipInnovations>().url, SANDBOX_URL);
    }

    /// Broken XML, and an answer without `DIDs`: clean errors.
    #[tokio::test]
    async fn malformed_answers() {
        let server = MockServer::start().await;
        answer(
            &server,
            "getDIDs",
            "<tns:npa>435</tns:npa>",
            "<?xml version='1.0'?><soap:Envelope><x>".into(),
        )
        .await;
        answer(
            &server,
            "assignDID",
            "<tns:tn>",
            "<?xml version='1.0'?><r><responseCode>100</responseCode></r>".into(),
        )
        .await;
        let env = Env::new(section(&server));
        let err = VoipInnovations
            .find_numbers(&SearchQuery::new("+1435", 2), &env.ctx())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::ByCarrier { reason, .. } if reason.starts_with("empty_response")),
            "{err:?}"
        );
        let err = VoipInnovations
            .acquire_number(doc("+14352154006", KIND), &env.ctx())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::ByCarrier { reason, .. } if reason.starts_with("malformed")),
            "{err:?}"
        );
    }

    /// `knm_search:find/1`: a slow VoIP Innovations does not hold the search back.
    #[tokio::test]
    async fn slow_carrier() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_string(fixture("voip_innovations_get_response.xml"))
                    .set_delay(std::time::Duration::from_secs(30)),
            )
            .mount(&server)
            .await;
        slow_carrier_is_left_behind(KIND, section(&server)).await;
    }
}

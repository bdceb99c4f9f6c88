//! `knm_vitelity` (`knm_vitelity`): Vitelity's `api.php` — an HTTP POST whose query string carries `login`,
//! `pass`, `xml=yes` and a `cmd` (`listnpa`, `listnpanxx`, `listtollfree`, `getlocaldid`,
//! `gettollfree`, `removedid`), answered with `<content><status>ok|fail</status>…</content>`.
//!
//! Config `number_manager.vitelity`: `login`, `pass` (credentials), `api_uri` (default
//! `https://api.vitelity.net/api.php`; Kazoo's default is plain http), `routesip` (string or
//! list, the first is used; required to buy), optional search values `withrates`, `type`,
//! `provider`, `cnam`, and `request_timeout_ms` (30000). Vitelity has no provisioning switches in
//! Kazoo and gets none here.

use std::sync::OnceLock;

use async_trait::async_trait;
use e164::{Converters, E164};
use serde_json::{Map, Value};

use super::external::{self, by_carrier, Element, ExternalCarrier, Secret, Section};
use super::{CarrierCtx, CarrierKind, CarrierSpec, ConfigSection, Found, FoundNumber, SearchQuery};
use crate::doc::{NumberDoc, NumberState};
use crate::error::Error;

const KIND: CarrierKind = CarrierKind::Vitelity;

/// The Vitelity carrier module.
#[derive(Debug, Clone, Copy, Default)]
pub struct Vitelity;

/// `number_manager.vitelity`.
#[derive(Debug, Clone)]
pub struct VitelityConfig {
    /// `api_uri`.
    pub api_uri: String,
    /// `login`.
    pub login: Secret,
    /// `pass`.
    pub pass: Secret,
    /// `routesip` (first entry).
    pub routesip: Option<String>,
    /// `withrates`, `type`, `provider`, `cnam`, sent with number searches when set.
    pub search_values: Vec<(&'static str, String)>,
    /// `request_timeout_ms`.
    pub timeout: std::time::Duration,
}

impl VitelityConfig {
    /// Reads the section.
    ///
    /// # Errors
    /// [`Error::Config`] naming a key of the wrong type.
    fn read(s: &Section<'_>) -> Result<Self, Error> {
        let mut search_values = Vec::new();
        for key in ["withrates", "type", "provider", "cnam"] {
            let v = match s.string(key) {
                Ok(v) => v,
                // `withrates`/`cnam` are often booleans in config documents.
                Err(_) => s.boolean(key, false).ok().map(|b| b.to_string()),
            };
            if let Some(v) = v {
                search_values.push((key, v));
            }
        }
        Ok(VitelityConfig {
            api_uri: s.base_url("api_uri", "https://api.vitelity.net/api.php")?,
            login: s.secret("login")?,
            pass: s.secret("pass")?,
            routesip: s.strings("routesip")?.into_iter().find(|r| !r.is_empty()),
            search_values,
            timeout: s.timeout()?,
        })
    }

    /// POSTs `cmd` with `params`; the parsed `<content>` element.
    async fn query(
        &self,
        ctx: &CarrierCtx<'_>,
        number: &str,
        params: &[(&str, String)],
    ) -> Result<Element, Error> {
        if self.login.is_empty() || self.pass.is_empty() {
            return Err(Error::Config {
                key: "number_manager.vitelity.login/pass".into(),
                reason: "credentials are not configured".into(),
            });
        }
        let mut qs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        qs.push(("xml", "yes"));
        qs.push(("login", self.login.expose()));
        qs.push(("pass", self.pass.expose()));
        let req = external::client(ctx).post(&self.api_uri).query(&qs);
        let reply = external::send(KIND, number, req, self.timeout).await?;
        map_error(number, reply.status, &reply.body)
    }
}

/// The wire answer → `knm_errors`: the `<content>` element when `status` is `ok` (or absent); `fail` is
/// `by_carrier` with the `<error>` text; a body that is not Vitelity XML is `by_carrier`
/// `malformed_response` (or `http <status>` when the status says why).
fn map_error(number: &str, status: u16, body: &str) -> Result<Element, Error> {
    let content = match Element::parse(body) {
        Ok(root) if root.name == "content" => root,
        Ok(_) | Err(_) if !(200..300).contains(&status) => {
            return Err(by_carrier(KIND, number, format!("http {status}")))
        }
        Ok(root) => {
            return Err(by_carrier(
                KIND,
                number,
                format!("malformed_response: root <{}>", root.name),
            ))
        }
        Err(e) => return Err(by_carrier(KIND, number, format!("malformed_response: {e}"))),
    };
    match content.child_text("status") {
        Some("fail") => {
            let msg = content.child_text("error").unwrap_or("fail").to_owned();
            Err(by_carrier(KIND, number, msg))
        }
        Some("ok") | None => Ok(content),
        Some(other) => Err(by_carrier(KIND, number, format!("malformed_response: status {other}"))),
    }
}

fn converters() -> &'static Converters {
    static C: OnceLock<Converters> = OnceLock::new();
    C.get_or_init(Converters::kazoo_defaults)
}

fn is_tollfree(number: &str) -> bool {
    converters().classify(number).is_some_and(|c| c.name == "tollfree_us" || c.name == "tollfree")
}

/// `xml_did_to_json/1`: a `<did>` with text is just its number; one with children is their
/// fields (`did`/`number` normalized into `number`; empty ones dropped).
fn did_to_json(el: &Element) -> Map<String, Value> {
    let mut m = Map::new();
    if el.children.is_empty() {
        m.insert("number".into(), Value::from(converters().normalize(&el.text)));
        return m;
    }
    fn fields(els: &[Element], m: &mut Map<String, Value>) {
        for c in els {
            if c.name == "did" || c.name == "number" {
                m.insert("number".into(), Value::from(converters().normalize(&c.text)));
            } else if !c.children.is_empty() {
                let mut inner = Map::new();
                fields(&c.children, &mut inner);
                m.insert(c.name.clone(), Value::Object(inner));
            } else if !c.text.is_empty() {
                m.insert(c.name.clone(), Value::from(c.text.clone()));
            }
        }
    }
    fields(&el.children, &mut m);
    m
}

/// `number_matches_prefix/2`: the number starts with the prefix, with or without its country
/// code (`country_code`, default `+1`).
fn matches_prefix(data: &Map<String, Value>, prefix: &str) -> bool {
    let number = data.get("number").and_then(Value::as_str).unwrap_or_default();
    let cc = data.get("country_code").and_then(Value::as_str).unwrap_or("+1");
    number.starts_with(prefix) || number.strip_prefix(cc).is_some_and(|n| n.starts_with(prefix))
}

/// What `knm_vitelity` declares about itself (see [`CarrierSpec`]).
/// (`should_lookup_cnam/0` answers its config `use_stepswitch_cnam`, default false: false here.)
pub(crate) const SPEC: CarrierSpec = CarrierSpec {
    kind: CarrierKind::Vitelity,
    module_name: "knm_vitelity",
    is_local: false,
    is_billable: true,
    lookup_cnam: false,
    maximal_prefix_length: 3,
    config_section: Some(ConfigSection::of::<Vitelity>("vitelity")),
    carrier: &Vitelity,
};

#[async_trait]
impl ExternalCarrier for Vitelity {
    const KIND: CarrierKind = KIND;
    type Config = VitelityConfig;

    fn read_config(section: &Section<'_>) -> Result<VitelityConfig, Error> {
        VitelityConfig::read(section)
    }

    async fn find(
        &self,
        query: &SearchQuery,
        config: &VitelityConfig,
        ctx: &CarrierCtx<'_>,
    ) -> Result<Found, Error> {
        let prefix = match query.prefix.strip_prefix("+1") {
            Some(p) => p,
            None if query.prefix.starts_with('+') => return Err(super::not_available(KIND)),
            None => query.prefix.as_str(),
        };
        let mut params: Vec<(&str, String)> = Vec::new();
        if is_tollfree(prefix) {
            params.push(("cmd", "listtollfree".into()));
            params.push(("limit", query.quantity.to_string()));
        } else {
            if prefix.len() <= 3 {
                params.push(("cmd", "listnpa".into()));
                params.push(("npa", prefix.to_owned()));
            } else {
                params.push(("cmd", "listnpanxx".into()));
                params.push(("npanxx", prefix.to_owned()));
            }
            params.extend(config.search_values.iter().map(|(k, v)| (*k, v.clone())));
        }
        let content = config.query(ctx, &query.prefix, &params).await?;
        let Some(numbers) = content.child("numbers") else {
            return Err(by_carrier(KIND, &query.prefix, "no_numbers"));
        };
        if let Some(first) = numbers.children.first().filter(|c| c.name == "response") {
            return Err(by_carrier(KIND, &query.prefix, first.text.clone()));
        }
        let rows = numbers
            .children
            .iter()
            .map(did_to_json)
            .filter(|d| matches_prefix(d, prefix))
            .filter_map(|d| {
                let number = E164::new(d.get("number")?.as_str()?).ok()?;
                Some(FoundNumber {
                    number,
                    module: KIND,
                    state: NumberState::Discovery,
                    carrier_data: d,
                })
            })
            .take(query.quantity)
            .collect();
        Ok(Found::Numbers(rows))
    }

    async fn acquire(
        &self,
        doc: NumberDoc,
        config: &VitelityConfig,
        ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        let number = doc.id.as_str();
        let cmd = if is_tollfree(number) { "gettollfree" } else { "getlocaldid" };
        let routesip = config.routesip.clone().ok_or_else(|| Error::Config {
            key: "number_manager.vitelity.routesip".into(),
            reason: "required to buy numbers".into(),
        })?;
        let params = [
            ("did", external::to_npan(number).to_owned()),
            ("cmd", cmd.to_owned()),
            ("routesip", routesip),
        ];
        config.query(ctx, number, &params).await?;
        Ok(doc)
    }

    async fn disconnect(
        &self,
        doc: NumberDoc,
        config: &VitelityConfig,
        ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        let number = doc.id.as_str();
        let params =
            [("did", external::to_npan(number).to_owned()), ("cmd", "removedid".to_owned())];
        config.query(ctx, number, &params).await?;
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
    use wiremock::matchers::{method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn section(server: &MockServer) -> Value {
        json!({"default": {"api_uri": format!("{}/api.php", server.uri()),
                           "login": "vit-login", "pass": "vit-s3cret", "routesip": ["1.2.3.4"]}})
    }

    async fn answer(server: &MockServer, cmd: &str, body: String) {
        Mock::given(method("POST"))
            .and(path("/api.php"))
            .and(query_param("cmd", cmd))
            .and(query_param("xml", "yes"))
            .and(query_param("login", "vit-login"))
            .and(query_param("pass", "vit-s3cret"))
            .respond_with(ResponseTemplate::new(200).set_body_string(body))
            .mount(server)
            .await;
    }

    /// Vectors N10–N12: toll-free, NPA-NXX and NPA searches.
    #[tokio::test]
    async fn n10_n12_searches() {
        let server = MockServer::start().await;
        answer(&server, "listtollfree", fixture("vitelity_listtollfree.xml")).await;
        answer(&server, "listnpanxx", fixture("vitelity_listnpanxx.xml")).await;
        answer(&server, "listnpa", fixture("vitelity_listnpa.xml")).await;
        let env = Env::new(section(&server));
        let ctx = env.ctx();
        let found =
            Vitelity.find_numbers(&SearchQuery::new("+18887771111", 1), &ctx).await.unwrap();
        assert_eq!(numbers(&found), ["+18887771111"]);
        let found =
            Vitelity.find_numbers(&SearchQuery::new("+19875559876", 1), &ctx).await.unwrap();
        assert_eq!(numbers(&found), ["+19875559876"]);
        assert_eq!(found.rows()[0].carrier_data["ratecenter"], "ANYCITY");
        let found = Vitelity.find_numbers(&SearchQuery::new("+1987", 2), &ctx).await.unwrap();
        assert_eq!(numbers(&found), ["+19875551234", "+19875559876"]);
        let reqs = server.received_requests().await.unwrap();
        let q = |i: usize| reqs[i].url.query().unwrap_or_default().to_owned();
        assert!(q(0).contains("limit=1"), "{}", q(0));
        assert!(q(1).contains("npanxx=9875559876"), "{}", q(1));
        assert!(q(2).contains("npa=987"), "{}", q(2));
    }

    /// Acquire: `getlocaldid` with the 10-digit DID and `routesip`; `removedid` on disconnect.
    #[tokio::test]
    async fn acquire_and_disconnect() {
        let server = MockServer::start().await;
        let ok = "<content><status>ok</status></content>".to_owned();
        Mock::given(method("POST"))
            .and(query_param("cmd", "getlocaldid"))
            .and(query_param("did", "9875559876"))
            .and(query_param("routesip", "1.2.3.4"))
            .respond_with(ResponseTemplate::new(200).set_body_string(ok.clone()))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(query_param("cmd", "removedid"))
            .and(query_param("did", "9875559876"))
            .respond_with(ResponseTemplate::new(200).set_body_string(ok))
            .expect(1)
            .mount(&server)
            .await;
        let env = Env::new(section(&server));
        let n = doc("+19875559876", KIND);
        assert_eq!(Vitelity.acquire_number(n.clone(), &env.ctx()).await.unwrap(), n);
        assert_eq!(Vitelity.disconnect_number(n.clone(), &env.ctx()).await.unwrap(), n);
    }

    /// `<status>fail</status>` is `by_carrier` with the `<error>` text; credentials stay out of
    /// the error even when the transport fails (the URL carries them).
    #[tokio::test]
    async fn acquire_failure() {
        let server = MockServer::start().await;
        answer(
            &server,
            "getlocaldid",
            "<content><status>fail</status><error>DID not available</error></content>".into(),
        )
        .await;
        let env = Env::new(section(&server));
        let err = Vitelity.acquire_number(doc("+19875559876", KIND), &env.ctx()).await.unwrap_err();
        assert!(
            matches!(&err, Error::ByCarrier { reason, .. } if reason == "DID not available"),
            "{err:?}"
        );
        assert_eq!(err.to_json()["message"], "fault by carrier");

        let mut s = section(&server);
        s["default"]["api_uri"] = json!("http://127.0.0.1:9/api.php");
        let env = Env::new(s);
        let err = Vitelity.acquire_number(doc("+19875559876", KIND), &env.ctx()).await.unwrap_err();
        let shown = format!("{err} {err:?} {}", err.to_json());
        assert!(matches!(err, Error::ByCarrier { .. }), "{shown}");
        assert!(!shown.contains("vit-s3cret") && !shown.contains("vit-login"), "{shown}");
    }

    /// Vitelity has no provisioning switches: they change nothing; a dry run makes no request.
    #[tokio::test]
    async fn provisioning_switches_and_dry_run() {
        let server = MockServer::start().await;
        let mut s = section(&server);
        s["default"]["enable_provisioning"] = json!(false);
        let env = Env::new(s.clone());
        let n = doc("+19875559876", KIND);
        let ctx = env.ctx().with_dry_run(true);
        assert_eq!(KIND.acquire(n.clone(), &ctx).await.unwrap(), n);
        assert_eq!(KIND.disconnect(n.clone(), &ctx).await.unwrap(), n);
        assert!(server.received_requests().await.unwrap().is_empty());
        s["default"]["sandbox_provisioning"] = json!(true);
        answer(&server, "removedid", "<content><status>ok</status></content>".into()).await;
        let env = Env::new(s);
        assert_eq!(Vitelity.disconnect_number(n.clone(), &env.ctx()).await.unwrap(), n);
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    }

    /// Not XML, an unknown root, no `<numbers>`: clean errors.
    #[tokio::test]
    async fn malformed_answers() {
        let server = MockServer::start().await;
        answer(&server, "listnpa", "<content><status>ok</status><numbers><did>".into()).await;
        answer(&server, "listnpanxx", "<html/>".into()).await;
        answer(&server, "listtollfree", "<content><status>ok</status></content>".into()).await;
        let env = Env::new(section(&server));
        let ctx = env.ctx();
        for prefix in ["+1987", "+1987555", "+18887771111"] {
            let err = Vitelity.find_numbers(&SearchQuery::new(prefix, 1), &ctx).await.unwrap_err();
            assert!(matches!(err, Error::ByCarrier { .. }), "{prefix}: {err:?}");
        }
    }

    /// `knm_search:find/1`: a slow Vitelity does not hold the search back.
    #[tokio::test]
    async fn slow_carrier() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_string(fixture("vitelity_listnpanxx.xml"))
                    .set_delay(std::time::Duration::from_secs(30)),
            )
            .mount(&server)
            .await;
        slow_carrier_is_left_behind(KIND, section(&server)).await;
    }
}

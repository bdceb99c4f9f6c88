//! `knm_bandwidth2` (`knm_bandwidth2`): the Bandwidth Dashboard API (XML over HTTP basic auth,
//! `https://dashboard.bandwidth.com/api/accounts/{account_id}/`) — `GET availableNumbers`,
//! `POST orders` and order polling with `GET orders/{id}`. Numbers of the legacy `knm_bandwidth`
//! module are read as this one ([`CarrierKind::from_module`]).
//!
//! Config `number_manager.bandwidth2`: `account_id`, `api_username`, `api_password`
//! (credentials), `site_id`, `sip_peer`, `order_name_prefix` (`Kazoo`), `max_search_quantity`
//! (500), `enable_provisioning` (true), `sandbox_provisioning` (**true**, as in Kazoo),
//! `base_url` (default `https://dashboard.bandwidth.com/api`), `request_timeout_ms` (30000), and
//! the order polling bounds Kazoo lacks: `order_poll_interval_ms` (2000, Kazoo's interval),
//! `order_poll_max_attempts` (30) and `order_poll_deadline_ms` (120000). Disconnect makes no call
//! (Kazoo's neither).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use e164::E164;
use serde_json::{Map, Value};

use super::external::{
    self, by_carrier, xml_escape, Element, ExternalCarrier, Provisioning, Secret, Section,
};
use super::{CarrierCtx, CarrierKind, CarrierSpec, ConfigSection, Found, FoundNumber, SearchQuery};
use crate::auth::AuthBy;
use crate::doc::{gregorian_seconds, NumberDoc, NumberState};
use crate::error::Error;

const KIND: CarrierKind = CarrierKind::Bandwidth2;

/// The Bandwidth (v2 API) carrier module.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bandwidth2;

/// `number_manager.bandwidth2`.
#[derive(Debug, Clone)]
pub struct Bandwidth2Config {
    /// `base_url`.
    pub base_url: String,
    /// `account_id`.
    pub account_id: String,
    /// `api_username`.
    pub username: Secret,
    /// `api_password`.
    pub password: Secret,
    /// `site_id`.
    pub site_id: String,
    /// `sip_peer`.
    pub sip_peer: String,
    /// `order_name_prefix`.
    pub order_name_prefix: String,
    /// `max_search_quantity`.
    pub max_search_quantity: u64,
    provisioning: Provisioning,
    /// `request_timeout_ms`.
    pub timeout: Duration,
    /// `order_poll_interval_ms`.
    pub poll_interval: Duration,
    /// `order_poll_max_attempts`.
    pub poll_max_attempts: u64,
    /// `order_poll_deadline_ms`: the whole acquire, polls included.
    pub poll_deadline: Duration,
}

impl Bandwidth2Config {
    /// Reads the section.
    ///
    /// # Errors
    /// [`Error::Config`] naming a key of the wrong type.
    fn read(s: &Section<'_>) -> Result<Self, Error> {
        Ok(Bandwidth2Config {
            base_url: s.base_url("base_url", "https://dashboard.bandwidth.com/api")?,
            account_id: s.string_or("account_id", "")?,
            username: s.secret("api_username")?,
            password: s.secret("api_password")?,
            site_id: s.string_or("site_id", "")?,
            sip_peer: s.string_or("sip_peer", "")?,
            order_name_prefix: s.string_or("order_name_prefix", "Kazoo")?,
            max_search_quantity: s.positive("max_search_quantity", 500)?,
            provisioning: Provisioning::read(s, true)?,
            timeout: s.timeout()?,
            poll_interval: Duration::from_millis(s.positive("order_poll_interval_ms", 2000)?),
            poll_max_attempts: s.positive("order_poll_max_attempts", 30)?,
            poll_deadline: Duration::from_millis(s.positive("order_poll_deadline_ms", 120_000)?),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/accounts/{}/{path}", self.base_url, self.account_id)
    }

    /// What is left of the acquire's deadline (`order_poll_deadline_ms`).
    fn remaining(&self, started: Instant) -> Duration {
        self.poll_deadline.saturating_sub(started.elapsed())
    }

    async fn call(
        &self,
        number: &str,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<Element, String> {
        let req = req.basic_auth(self.username.expose(), Some(self.password.expose()));
        match external::send(KIND, number, req, timeout).await {
            Ok(reply) => map_error(reply.status, &reply.body),
            Err(Error::ByCarrier { reason, .. }) => Err(reason),
            Err(other) => Err(other.to_string()),
        }
    }
}

/// The wire answer → the reason of a `knm_errors` `by_carrier` (`handle_response/1`,
/// `verify_response/1`): 401 `authentication`, 403 `authorization`, 404 `not_found`, 500/503
/// `server_error`; an XML body is successful iff it holds a number, a number detail, a site, a
/// peer or an `OrderStatus`, else its `ErrorList/Error/Description` (or `Number not found`); a
/// non-XML or unparsable body is `empty_response`.
fn map_error(status: u16, body: &str) -> Result<Element, String> {
    match status {
        401 => return Err("authentication".into()),
        403 => return Err("authorization".into()),
        404 => return Err("not_found".into()),
        500 | 503 => return Err("server_error".into()),
        _ => {}
    }
    if !body.trim_start().starts_with("<?xml") {
        return Err("empty_response".into());
    }
    let root = Element::parse(body).map_err(|e| format!("empty_response: malformed XML: {e}"))?;
    let has = |path: &[&str]| root.find(path[0]).and_then(|e| e.at(&path[1..])).is_some();
    let ok = has(&["TelephoneNumberDetailList", "TelephoneNumberDetail"])
        || has(&["TelephoneNumberList", "TelephoneNumber"])
        || has(&["SitesResponse", "Sites", "Site"])
        || has(&["TNSipPeersResponse", "SipPeers", "SipPeer"])
        || root.find("OrderStatus").is_some_and(|s| !s.text.is_empty());
    if ok {
        Ok(root)
    } else {
        let description = root
            .find("ErrorList")
            .and_then(|l| l.at(&["Error", "Description"]))
            .map(|d| d.text.clone())
            .filter(|d| !d.is_empty());
        Err(description.unwrap_or_else(|| "Number not found".into()))
    }
}

fn from_bandwidth2(n: &str) -> String {
    if n.starts_with('+') {
        n.to_owned()
    } else {
        format!("+1{n}")
    }
}

fn is_tollfree_wildcard(prefix: &str) -> bool {
    prefix.len() == 3 && prefix.starts_with('8') && prefix.contains('*')
}

/// The `availableNumbers` query of `find_numbers/3`.
fn search_params(digits: &str, quantity: u64) -> Option<Vec<(&'static str, String)>> {
    let q = quantity.to_string();
    let npa = digits.get(..3)?;
    Some(if external::is_us_tollfree_npa(npa) {
        // Kazoo's pattern: the NPA without its first digit, then `*`.
        vec![
            ("tollFreeWildCardPattern", format!("{}*", &npa[1..])),
            ("enableTNDetail", "true".into()),
            ("quantity", q),
        ]
    } else if is_tollfree_wildcard(npa) {
        vec![
            ("tollFreeWildCardPattern", npa.to_owned()),
            ("enableTNDetail", "false".into()),
            ("quantity", q),
        ]
    } else if digits.len() == 3 {
        vec![("areaCode", npa.to_owned()), ("enableTNDetail", "false".into()), ("quantity", q)]
    } else {
        let npanxx: String = digits.chars().take(6).collect();
        vec![("npaNxx", npanxx), ("enableTNDetail", "false".into()), ("quantity", q)]
    })
}

fn rows(root: &Element) -> Vec<FoundNumber> {
    let mut out = Vec::new();
    let mut push = |n: &str, data: Map<String, Value>| {
        if let Ok(number) = E164::new(from_bandwidth2(n)) {
            out.push(FoundNumber {
                number,
                module: KIND,
                state: NumberState::Discovery,
                carrier_data: data,
            });
        }
    };
    if let Some(list) = root.find("TelephoneNumberList") {
        for tn in list.children_named("TelephoneNumber") {
            push(&tn.text, Map::new());
        }
    }
    if let Some(list) = root.find("TelephoneNumberDetailList") {
        for d in list.children_named("TelephoneNumberDetail") {
            let Some(n) = d.child_text("FullNumber") else { continue };
            let mut rc = Map::new();
            for (key, field) in [("name", "RateCenter"), ("lata", "LATA"), ("state", "State")] {
                if let Some(v) = d.child_text(field) {
                    rc.insert(key.into(), Value::from(v));
                }
            }
            let mut data = Map::new();
            if !rc.is_empty() {
                data.insert("rate_center".into(), Value::Object(rc));
            }
            push(n, data);
        }
    }
    out
}

/// What `knm_bandwidth2` declares about itself (see [`CarrierSpec`]).
pub(crate) const SPEC: CarrierSpec = CarrierSpec {
    kind: CarrierKind::Bandwidth2,
    module_name: "knm_bandwidth2",
    is_local: false,
    is_billable: true,
    lookup_cnam: true,
    maximal_prefix_length: 3,
    config_section: Some(ConfigSection::of::<Bandwidth2>("bandwidth2")),
    carrier: &Bandwidth2,
};

#[async_trait]
impl ExternalCarrier for Bandwidth2 {
    const KIND: CarrierKind = KIND;
    type Config = Bandwidth2Config;

    fn read_config(section: &Section<'_>) -> Result<Bandwidth2Config, Error> {
        Bandwidth2Config::read(section)
    }

    async fn find(
        &self,
        query: &SearchQuery,
        config: &Bandwidth2Config,
        ctx: &CarrierCtx<'_>,
    ) -> Result<Found, Error> {
        let digits = query.prefix.trim_start_matches('+').trim_start_matches('1');
        let quantity = (query.quantity as u64).min(config.max_search_quantity);
        let params = search_params(digits, quantity).ok_or_else(|| super::not_available(KIND))?;
        let req = external::client(ctx).get(config.url("availableNumbers")).query(&params);
        let root = config
            .call(&query.prefix, req, config.timeout)
            .await
            .map_err(|reason| by_carrier(KIND, &query.prefix, reason))?;
        Ok(Found::Numbers(rows(&root)))
    }

    async fn acquire(
        &self,
        mut doc: NumberDoc,
        config: &Bandwidth2Config,
        ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        if config.provisioning.skip_call(KIND, doc.id.as_str())? {
            return Ok(doc);
        }
        let num = external::to_npan(doc.id.as_str()).to_owned();
        let fail =
            |reason: &str| by_carrier(KIND, &num, format!("Unable to acquire number: {reason}"));
        let pending = |order_id: &str, reason: &str| {
            tracing::warn!(
                number = num,
                order_id,
                reason,
                "purchase outcome unknown; recorded as pending"
            );
            Error::PurchasePending {
                module: KIND.module_name().to_owned(),
                number: num.clone(),
                order_id: order_id.to_owned(),
            }
        };
        let started = Instant::now();
        // An order of an earlier run whose outcome was unknown: follow it, never buy twice. Only
        // an order that ended without the number lets a new one be placed.
        let mut completed = None;
        if let Some(id) = pending_order_id(&doc) {
            match follow_order(config, ctx, &num, &id, None, started).await {
                Ok(root) => completed = Some(root),
                Err(OrderEnd::Unknown(reason)) => return Err(pending(&id, &reason)),
                Err(OrderEnd::Failed(reason)) => {
                    tracing::info!(
                        number = num,
                        order_id = id,
                        reason,
                        "the pending order failed; ordering again"
                    );
                }
            }
        }
        let root = match completed {
            Some(root) => root,
            None => {
                let unix_now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or_default();
                let order_name =
                    format!("{}-{}", config.order_name_prefix, gregorian_seconds(unix_now));
                let customer_order_id = match ctx.auth_by {
                    Some(AuthBy::Account(id)) => id.as_str().to_owned(),
                    Some(AuthBy::System) | None => "system".to_owned(),
                };
                let body = format!(
                    "<?xml version=\"1.0\"?><Order><Name>{}</Name><CustomerOrderId>{}</CustomerOrderId>\
                     <SiteId>{}</SiteId><PeerId>{}</PeerId><ExistingTelephoneNumberOrderType>\
                     <TelephoneNumberList><TelephoneNumber>{}</TelephoneNumber></TelephoneNumberList>\
                     </ExistingTelephoneNumberOrderType></Order>",
                    xml_escape(&order_name),
                    xml_escape(&customer_order_id),
                    xml_escape(&config.site_id),
                    xml_escape(&config.sip_peer),
                    xml_escape(&num),
                );
                let req = external::client(ctx)
                    .post(config.url("orders"))
                    .header("Accept", "*/*")
                    .header("X-BWC-IN-Control-Processing-Type", "process")
                    .header("Content-Type", "application/xml")
                    .body(body);
                let root = config
                    .call(&num, req, config.timeout.min(config.remaining(started)))
                    .await
                    .map_err(|r| fail(&r))?;
                let order_id =
                    root.find("Order").and_then(|o| o.child_text("id")).map(str::to_owned);
                match (order_status(&root).as_str(), order_id) {
                    ("COMPLETE", _) => root,
                    (_, Some(id)) => {
                        match follow_order(config, ctx, &num, &id, Some(root), started).await {
                            Ok(root) => root,
                            Err(OrderEnd::Failed(reason)) => return Err(fail(&reason)),
                            Err(OrderEnd::Unknown(reason)) => return Err(pending(&id, &reason)),
                        }
                    }
                    ("" | "RECEIVED" | "PROCESSING", None) => {
                        return Err(fail(if order_status(&root).is_empty() {
                            "no OrderStatus"
                        } else {
                            "order without id"
                        }))
                    }
                    (other, None) => return Err(fail(other)),
                }
            }
        };
        doc.carrier_data.remove(PENDING_ORDER);
        if let Some(order) = root.find("Order") {
            if let Some(v) = order.child_text("CustomerOrderId") {
                doc.carrier_data.insert("order_id".into(), Value::from(v));
            }
            if let Some(v) = order.child_text("Name") {
                doc.carrier_data.insert("order_name".into(), Value::from(v));
            }
            let tn = order
                .at(&["ExistingTelephoneNumberOrderType", "TelephoneNumberList", "TelephoneNumber"])
                .map(|t| t.text.as_str())
                .filter(|t| !t.is_empty());
            if let Some(tn) = tn {
                doc.carrier_data.insert("number".into(), Value::from(from_bandwidth2(tn)));
            }
        }
        Ok(doc)
    }
}

/// The key of `pvt_carrier_data` under which a purchase whose outcome is unknown is recorded
/// (`{"order_id", "module", "since"}`), written by the store layer.
pub const PENDING_ORDER: &str = "pending_order";

/// The order id of a purchase recorded as pending on `doc`.
fn pending_order_id(doc: &NumberDoc) -> Option<String> {
    doc.carrier_data
        .get(PENDING_ORDER)
        .and_then(|p| p.get("order_id"))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

/// What the carrier says, at one look, of a purchase recorded as pending on a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingOutcome {
    /// The order completed: the number is ours (buying it again follows that order).
    Completed,
    /// The order ended without the number (the carrier's status), or there is no order to ask
    /// about: nothing was bought.
    Failed(String),
    /// Still in progress, or the carrier could not be asked: look again later.
    Unknown(String),
}

/// Asks the carrier once (no polling) about the order recorded as pending on `doc`.
///
/// # Errors
/// A missing or incomplete `number_manager.bandwidth2` configuration.
pub async fn pending_order_outcome(
    doc: &NumberDoc,
    ctx: &CarrierCtx<'_>,
) -> Result<PendingOutcome, Error> {
    let Some(id) = pending_order_id(doc) else {
        return Ok(PendingOutcome::Failed("no pending order recorded".into()));
    };
    let config = ctx.settings.get::<Bandwidth2>()?;
    let num = external::to_npan(doc.id.as_str()).to_owned();
    let req = external::client(ctx).get(config.url(&format!("orders/{id}")));
    Ok(match config.call(&num, req, config.timeout).await {
        Ok(root) => match order_status(&root).as_str() {
            "COMPLETE" => PendingOutcome::Completed,
            status @ ("RECEIVED" | "PROCESSING") => {
                PendingOutcome::Unknown(format!("order {id} still {status}"))
            }
            "" => PendingOutcome::Failed(format!("order {id}: no OrderStatus")),
            other => PendingOutcome::Failed(format!("order {id}: {other}")),
        },
        Err(reason) => PendingOutcome::Unknown(reason),
    })
}

fn order_status(root: &Element) -> String {
    root.find("OrderStatus").map(|s| s.text.clone()).unwrap_or_default()
}

/// How following an order ended without it completing.
enum OrderEnd {
    /// The carrier says the order ended without the number (`FAILED`, no status): the reason.
    Failed(String),
    /// Still in progress when the polls ran out, or the carrier could not be asked: the order may
    /// yet complete.
    Unknown(String),
}

/// Follows order `id` from its last answer (`root`, none when resuming) until `COMPLETE`,
/// polling within the acquire's deadline and attempts.
async fn follow_order(
    config: &Bandwidth2Config,
    ctx: &CarrierCtx<'_>,
    num: &str,
    id: &str,
    mut root: Option<Element>,
    started: Instant,
) -> Result<Element, OrderEnd> {
    let mut polls = 0;
    let mut last = "unknown".to_owned();
    loop {
        let seen = root.is_some();
        if let Some(answer) = root.take() {
            let status = order_status(&answer);
            match status.as_str() {
                "COMPLETE" => return Ok(answer),
                "RECEIVED" | "PROCESSING" => last = status,
                "" => return Err(OrderEnd::Failed("no OrderStatus".into())),
                other => return Err(OrderEnd::Failed(other.to_owned())),
            }
        }
        if polls >= config.poll_max_attempts || config.remaining(started) <= config.poll_interval {
            return Err(OrderEnd::Unknown(format!(
                "order {id} still {last} after {polls} polls in {} ms",
                started.elapsed().as_millis()
            )));
        }
        if seen {
            tokio::time::sleep(config.poll_interval).await;
        }
        polls += 1;
        let req = external::client(ctx).get(config.url(&format!("orders/{id}")));
        root = Some(
            config
                .call(num, req, config.timeout.min(config.remaining(started)))
                .await
                .map_err(OrderEnd::Unknown)?,
        );
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
    use wiremock::matchers::{
        body_string_contains, header, header_exists, method, path, query_param,
    };
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const ACCOUNT: &str = "/api/accounts/eunit_testing_account";

    fn section(server: &MockServer) -> Value {
        json!({"default": {"base_url": format!("{}/api", server.uri()),
                           "account_id": "eunit_testing_account",
                           "api_username": "bw-user", "api_password": "bw-s3cret",
                           "site_id": "1337", "sip_peer": "13337",
                           "enable_provisioning": true, "sandbox_provisioning": false,
                           "order_poll_interval_ms": 10}})
    }

    fn xml(body: String) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_raw(body, "application/xml")
    }

    /// Vectors N17–N18 (area code, toll-free) and the NPA-NXX and detail forms.
    #[tokio::test]
    async fn n17_n18_searches() {
        let server = MockServer::start().await;
        let search = || {
            Mock::given(method("GET"))
                .and(path(format!("{ACCOUNT}/availableNumbers")))
                .and(header_exists("authorization"))
        };
        search()
            .and(query_param("areaCode", "973"))
            .and(query_param("quantity", "2"))
            .respond_with(xml(fixture("bandwidth2_find_by_npa_no_detail.xml")))
            .mount(&server)
            .await;
        search()
            .and(query_param("tollFreeWildCardPattern", "55*"))
            .and(query_param("enableTNDetail", "true"))
            .respond_with(xml(fixture("bandwidth2_find_tollfree.xml")))
            .mount(&server)
            .await;
        search()
            .and(query_param("npaNxx", "973370"))
            .respond_with(xml(fixture("bandwidth2_find_by_npa.xml")))
            .mount(&server)
            .await;
        search()
            .and(query_param("tollFreeWildCardPattern", "8**"))
            .and(query_param("enableTNDetail", "false"))
            .respond_with(xml(fixture("bandwidth2_find_tollfree.xml")))
            .mount(&server)
            .await;
        let env = Env::new(section(&server));
        let ctx = env.ctx();
        let found = Bandwidth2.find_numbers(&SearchQuery::new("+18**", 3), &ctx).await.unwrap();
        assert_eq!(found.rows().len(), 15);
        let found = Bandwidth2.find_numbers(&SearchQuery::new("+1973", 2), &ctx).await.unwrap();
        assert_eq!(numbers(&found), ["+19733705112", "+19733705183"]);
        let found = Bandwidth2.find_numbers(&SearchQuery::new("+1855", 15), &ctx).await.unwrap();
        assert_eq!(found.rows().len(), 15);
        assert!(numbers(&found).iter().all(|n| n.starts_with("+1855")));
        let found = Bandwidth2.find_numbers(&SearchQuery::new("+19733705", 2), &ctx).await.unwrap();
        assert_eq!(numbers(&found), ["+19733705112", "+19733705183"]);
        assert_eq!(
            Value::Object(found.rows()[0].carrier_data.clone()),
            json!({"rate_center": {"name": "MENDHAM", "lata": "224", "state": "NJ"}})
        );
        let auth = server.received_requests().await.unwrap()[1].headers["authorization"].clone();
        assert!(auth.to_str().unwrap().starts_with("Basic "));
    }

    /// Vector N19: the order is RECEIVED, one poll later COMPLETE; carrier data from the order.
    #[tokio::test]
    async fn n19_acquire_polls_until_complete() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(format!("{ACCOUNT}/orders")))
            .and(header("X-BWC-IN-Control-Processing-Type", "process"))
            .and(body_string_contains("<TelephoneNumber>9734096113</TelephoneNumber>"))
            .and(body_string_contains("<SiteId>1337</SiteId><PeerId>13337</PeerId>"))
            .and(body_string_contains("<Name>Kazoo-"))
            .respond_with(xml(fixture("bandwidth2_buy_a_number.xml")))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("{ACCOUNT}/orders/dc0008ec-07fc-41bf-a3bd-6c6ebf913f1c")))
            .respond_with(xml(fixture("bandwidth2_check_order.xml")))
            .expect(1)
            .mount(&server)
            .await;
        let env = Env::new(section(&server));
        let got = Bandwidth2.acquire_number(doc("+19734096113", KIND), &env.ctx()).await.unwrap();
        assert_eq!(got.id.as_str(), "+19734096113");
        assert_eq!(
            Value::Object(got.carrier_data),
            json!({"order_id": "deadbeef1234567901234567890dead",
                   "order_name": "Kazoo-63628571101", "number": "+19734096113"})
        );
    }

    /// A FAILED order and an `ErrorList` answer: `by_carrier` `Unable to acquire number: …`,
    /// cause the 10-digit number as in Kazoo; an order that never completes (bounded polling) is
    /// a pending purchase.
    #[tokio::test]
    async fn acquire_failures_and_bounded_polling() {
        let server = MockServer::start().await;
        let received = fixture("bandwidth2_buy_a_number.xml");
        let failed = received.replace("RECEIVED", "FAILED");
        let errors = "<?xml version=\"1.0\"?><OrderResponse><ErrorList><Error><Code>5005</Code>\
                      <Description>Telephone number is not available</Description></Error>\
                      </ErrorList></OrderResponse>";
        for (tn, body) in [
            ("9734096113", failed),
            ("9734096114", errors.to_owned()),
            ("9734096115", received.clone()),
        ] {
            Mock::given(method("POST"))
                .and(body_string_contains(format!("<TelephoneNumber>{tn}</TelephoneNumber>")))
                .respond_with(xml(body))
                .mount(&server)
                .await;
        }
        Mock::given(method("GET"))
            .and(path(format!("{ACCOUNT}/orders/dc0008ec-07fc-41bf-a3bd-6c6ebf913f1c")))
            .respond_with(xml(received))
            .expect(3)
            .mount(&server)
            .await;
        let mut s = section(&server);
        s["default"]["order_poll_max_attempts"] = json!(3);
        let env = Env::new(s);
        let reason = |e: Error| match e {
            Error::ByCarrier { reason, number, .. } => (reason, number),
            other => panic!("{other:?}"),
        };
        let (r, n) = reason(
            Bandwidth2.acquire_number(doc("+19734096113", KIND), &env.ctx()).await.unwrap_err(),
        );
        assert_eq!((r.as_str(), n.as_str()), ("Unable to acquire number: FAILED", "9734096113"));
        let (r, _) = reason(
            Bandwidth2.acquire_number(doc("+19734096114", KIND), &env.ctx()).await.unwrap_err(),
        );
        assert_eq!(r, "Unable to acquire number: Telephone number is not available");
        // Still RECEIVED after the polls: the order may complete yet, so the outcome is
        // unknown (recorded by the store layer), not a refusal.
        match Bandwidth2.acquire_number(doc("+19734096115", KIND), &env.ctx()).await {
            Err(Error::PurchasePending { order_id, number, .. }) => {
                assert_eq!(order_id, "dc0008ec-07fc-41bf-a3bd-6c6ebf913f1c");
                assert_eq!(number, "9734096115");
            }
            other => panic!("{other:?}"),
        }
    }

    /// Disconnect is a no-op; the carrier provisioning switches of `number_manager.<carrier>` switches (bandwidth2's sandbox defaults to true); a dry run
    /// makes no request; credentials stay out of errors and Debug.
    #[tokio::test]
    async fn disconnect_provisioning_and_dry_run() {
        let server = MockServer::start().await;
        let n = doc("+19734096113", KIND);
        let env = Env::new(section(&server));
        assert_eq!(Bandwidth2.disconnect_number(n.clone(), &env.ctx()).await.unwrap(), n);
        let ctx = env.ctx().with_dry_run(true);
        assert_eq!(KIND.acquire(n.clone(), &ctx).await.unwrap(), n);
        let env = Env::new(json!({"enable_provisioning": false}));
        assert_eq!(Bandwidth2.acquire_number(n.clone(), &env.ctx()).await.unwrap(), n);
        let env = Env::new(json!({"enable_provisioning": false, "sandbox_provisioning": false}));
        let err = Bandwidth2.acquire_number(n.clone(), &env.ctx()).await.unwrap_err();
        assert_eq!(err.to_json()["message"], "provisioning_disabled");
        assert!(server.received_requests().await.unwrap().is_empty());

        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(401).set_body_string("bw-s3cret?"))
            .mount(&server)
            .await;
        let env = Env::new(section(&server));
        let err =
            Bandwidth2.find_numbers(&SearchQuery::new("+1973", 2), &env.ctx()).await.unwrap_err();
        assert!(
            matches!(&err, Error::ByCarrier { reason, .. } if reason == "authentication"),
            "{err:?}"
        );
        let config = env.config_of::<Bandwidth2>();
        assert!(!format!("{config:?} {err:?}").contains("bw-s3cret"));
    }

    /// Broken XML, a non-XML 200 and an empty search: clean errors.
    #[tokio::test]
    async fn malformed_answers() {
        let server = MockServer::start().await;
        for (npa, body) in [
            ("973", "<?xml version=\"1.0\"?><SearchResult><TelephoneNumberList>"),
            ("974", "{\"not\": \"xml\"}"),
            (
                "975",
                "<?xml version=\"1.0\"?><SearchResult><ResultCount>0</ResultCount></SearchResult>",
            ),
        ] {
            Mock::given(method("GET"))
                .and(query_param("areaCode", npa))
                .respond_with(xml(body.to_owned()))
                .mount(&server)
                .await;
        }
        let env = Env::new(section(&server));
        for (npa, want) in
            [("973", "empty_response"), ("974", "empty_response"), ("975", "Number not found")]
        {
            let err = Bandwidth2
                .find_numbers(&SearchQuery::new(format!("+1{npa}"), 2), &env.ctx())
                .await
                .unwrap_err();
            assert!(
                matches!(&err, Error::ByCarrier { reason, .. } if reason.starts_with(want)),
                "{err:?}"
            );
        }
    }

    /// `knm_search:find/1`: a slow Bandwidth does not hold the search back.
    #[tokio::test]
    async fn slow_carrier() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(
                xml(fixture("bandwidth2_find_by_npa_no_detail.xml"))
                    .set_delay(Duration::from_secs(30)),
            )
            .mount(&server)
            .await;
        slow_carrier_is_left_behind(KIND, section(&server)).await;
    }
}

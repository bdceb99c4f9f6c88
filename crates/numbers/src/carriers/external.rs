//! Plumbing shared by the external carrier modules (telnyx, vitelity, voip_innovations,
//! bandwidth2, other, simwood): the [`ExternalCarrier`] trait (a carrier handed its typed
//! config), reading a `number_manager.<carrier>` section, redacted credentials, the HTTP client,
//! sending one request under a timeout, and the provisioning switches of a carrier's section.
//!
//! A transport failure or timeout becomes the `knm_errors` `by_carrier` error whose reason is logged, never
//! rendered; the request URL is stripped from transport errors because some carriers (vitelity)
//! carry credentials in the query string.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use e164::E164;
use serde_json::Value;

use super::{check_not_implemented, Carrier, CarrierCtx, CarrierKind, Found, SearchQuery};
use crate::doc::NumberDoc;
use crate::error::Error;

/// A carrier module with an API and settings of its own: its `number_manager.<carrier>` section
/// is read once into [`ExternalCarrier::Config`] ([`super::CarrierSettings`]) and each call is
/// handed that config. Implementing this implements [`Carrier`]: the calls look the config up in
/// the context's settings (a section that could not be read fails the call with its
/// [`Error::Config`]) and pass it on. The dry run is answered before, by
/// [`CarrierKind::acquire`] and [`CarrierKind::disconnect`].
#[async_trait]
pub(crate) trait ExternalCarrier: Send + Sync + 'static {
    /// Which module this is.
    const KIND: CarrierKind;

    /// The typed settings.
    type Config: fmt::Debug + Send + Sync + 'static;

    /// Reads the settings from the carrier's section.
    ///
    /// # Errors
    /// [`Error::Config`] naming a key of the wrong type.
    fn read_config(section: &Section<'_>) -> Result<Self::Config, Error>;

    /// [`Carrier::find_numbers`] with the carrier's settings.
    async fn find(
        &self,
        query: &SearchQuery,
        config: &Self::Config,
        ctx: &CarrierCtx<'_>,
    ) -> Result<Found, Error>;

    /// [`Carrier::acquire_number`] with the carrier's settings; the default buys nothing.
    async fn acquire(
        &self,
        doc: NumberDoc,
        _config: &Self::Config,
        _ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        Ok(doc)
    }

    /// [`Carrier::disconnect_number`] with the carrier's settings; the default gives nothing back.
    async fn disconnect(
        &self,
        doc: NumberDoc,
        _config: &Self::Config,
        _ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        Ok(doc)
    }

    /// [`Carrier::check_numbers`] with the carrier's settings; the default cannot check.
    async fn check(
        &self,
        _numbers: &[E164],
        _config: &Self::Config,
        _ctx: &CarrierCtx<'_>,
    ) -> Result<BTreeMap<String, String>, Error> {
        Err(check_not_implemented())
    }
}

#[async_trait]
impl<T: ExternalCarrier> Carrier for T {
    fn kind(&self) -> CarrierKind {
        T::KIND
    }

    async fn find_numbers(
        &self,
        query: &SearchQuery,
        ctx: &CarrierCtx<'_>,
    ) -> Result<Found, Error> {
        let config = ctx.settings.get::<T>()?;
        self.find(query, &config, ctx).await
    }

    async fn acquire_number(
        &self,
        doc: NumberDoc,
        ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        let config = ctx.settings.get::<T>()?;
        self.acquire(doc, &config, ctx).await
    }

    async fn disconnect_number(
        &self,
        doc: NumberDoc,
        ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        let config = ctx.settings.get::<T>()?;
        self.disconnect(doc, &config, ctx).await
    }

    async fn check_numbers(
        &self,
        numbers: &[E164],
        ctx: &CarrierCtx<'_>,
    ) -> Result<BTreeMap<String, String>, Error> {
        let config = ctx.settings.get::<T>()?;
        self.check(numbers, &config, ctx).await
    }
}

/// Default per-request timeout of the external carriers (`request_timeout_ms`): 30 s (Kazoo
/// waits 180 s). A search is also bounded by `number_search_timeout_ms` (`knm_search:find/1`).
pub(crate) const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;

/// Connect timeout of the default client.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The system_config document holding `kind`'s settings (`number_manager.telnyx`, …), or `None`
/// for a module without settings of its own.
pub fn config_doc_id(kind: CarrierKind) -> Option<String> {
    kind.spec().config_section.map(|section| format!("number_manager.{}", section.name))
}

/// The carrier whose settings document `doc_id` is (`number_manager.telnyx` → `knm_telnyx`), the
/// inverse of [`config_doc_id`].
pub fn config_kind(doc_id: &str) -> Option<CarrierKind> {
    let name = doc_id.strip_prefix("number_manager.")?;
    CarrierKind::from_module(&format!("knm_{name}")).filter(|k| config_doc_id(*k).is_some())
}

/// A credential (token, password, login): shown as `***` by `Debug` and `Display`, readable
/// only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The credential itself, for the request that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty (not configured).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// One carrier's config section read like `kapps_config`: the `default` sub-object when the
/// document has one, top-level keys otherwise.
pub(crate) struct Section<'a> {
    doc: String,
    section: Option<&'a Value>,
    top: &'a Value,
}

impl<'a> Section<'a> {
    /// `kind`'s section `top` (the document, or its `default` object).
    pub(crate) fn new(kind: CarrierKind, top: &'a Value) -> Self {
        Section {
            doc: config_doc_id(kind).unwrap_or_else(|| "number_manager".to_owned()),
            section: top.get("default").filter(|v| v.is_object()),
            top,
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.section.and_then(|s| s.get(key)).or_else(|| self.top.get(key)).filter(|v| !v.is_null())
    }

    fn bad(&self, key: &str, reason: &str) -> Error {
        Error::Config { key: format!("{}.{key}", self.doc), reason: reason.to_owned() }
    }

    /// A string (numbers are read as their text, like `kapps_config:get_string`); `None` when
    /// absent or empty.
    pub(crate) fn string(&self, key: &str) -> Result<Option<String>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(self.bad(key, "expected a string")),
        }
    }

    /// A string with a default.
    pub(crate) fn string_or(&self, key: &str, default: &str) -> Result<String, Error> {
        Ok(self.string(key)?.unwrap_or_else(|| default.to_owned()))
    }

    /// A credential (empty when absent).
    pub(crate) fn secret(&self, key: &str) -> Result<Secret, Error> {
        match self.get(key) {
            None => Ok(Secret::default()),
            Some(Value::String(s)) => Ok(Secret::new(s.clone())),
            Some(Value::Number(n)) => Ok(Secret::new(n.to_string())),
            Some(_) => Err(self.bad(key, "expected a string")),
        }
    }

    /// `kapps_config:get_is_true`: `true` or `"true"`.
    pub(crate) fn boolean(&self, key: &str, default: bool) -> Result<bool, Error> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if s == "true" => Ok(true),
            Some(Value::String(s)) if s == "false" => Ok(false),
            Some(_) => Err(self.bad(key, "expected a boolean")),
        }
    }

    /// A positive integer (or its text).
    pub(crate) fn positive(&self, key: &str, default: u64) -> Result<u64, Error> {
        let v = match self.get(key) {
            None => return Ok(default),
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.parse().ok(),
            Some(_) => None,
        };
        v.filter(|v| *v > 0).ok_or_else(|| self.bad(key, "expected a positive integer"))
    }

    /// A list of strings, a single string read as a one-item list.
    pub(crate) fn strings(&self, key: &str) -> Result<Vec<String>, Error> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_owned).ok_or_else(|| self.bad(key, "expected strings"))
                })
                .collect(),
            Some(_) => Err(self.bad(key, "expected a string or a list of strings")),
        }
    }

    /// The per-request timeout (`request_timeout_ms`).
    pub(crate) fn timeout(&self) -> Result<Duration, Error> {
        Ok(Duration::from_millis(self.positive("request_timeout_ms", DEFAULT_REQUEST_TIMEOUT_MS)?))
    }

    /// A base URL (`key`, else `default`), checked to be http(s), without a trailing `/`.
    pub(crate) fn base_url(&self, key: &str, default: &str) -> Result<String, Error> {
        let raw = self.string_or(key, default)?;
        match url::Url::parse(&raw) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {
                Ok(raw.trim_end_matches('/').to_owned())
            }
            _ => Err(self.bad(key, "expected an http(s) URL")),
        }
    }
}

/// The provisioning switches of a carrier's section: `enable_provisioning` / `sandbox_provisioning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Provisioning {
    pub(crate) enabled: bool,
    pub(crate) sandbox: bool,
}

impl Provisioning {
    pub(crate) fn read(section: &Section<'_>, sandbox_default: bool) -> Result<Self, Error> {
        Ok(Provisioning {
            enabled: section.boolean("enable_provisioning", true)?,
            sandbox: section.boolean("sandbox_provisioning", sandbox_default)?,
        })
    }

    /// Whether the carrier is to be skipped for `number`: with provisioning disabled, sandbox
    /// succeeds without calling out (`Ok(true)`), otherwise `provisioning_disabled` (500).
    pub(crate) fn skip_call(self, kind: CarrierKind, number: &str) -> Result<bool, Error> {
        match (self.enabled, self.sandbox) {
            (true, _) => Ok(false),
            (false, true) => {
                tracing::debug!(
                    module = kind.module_name(),
                    number,
                    "sandbox provisioning: no carrier call"
                );
                Ok(true)
            }
            (false, false) => Err(Error::Unspecified {
                reason: "provisioning_disabled".into(),
                cause: Some(number.to_owned()),
            }),
        }
    }
}

/// The country calling code a normalized number starts with (`+441…` → `44`): E.164 codes form
/// a prefix code — `1` and `7` have one digit, the two-digit ones are listed, every other code has
/// three digits.
pub(crate) fn calling_code(number: &str) -> Option<&str> {
    const TWO: [&str; 44] = [
        "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46",
        "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63",
        "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
    ];
    let digits = number.strip_prefix('+').unwrap_or(number);
    if !digits.bytes().all(|b| b.is_ascii_digit()) || digits.is_empty() {
        return None;
    }
    let n = match digits.as_bytes()[0] {
        b'1' | b'7' => 1,
        _ if digits.len() >= 2 && TWO.contains(&&digits[..2]) => 2,
        _ => 3,
    };
    digits.get(..n)
}

/// The client of `ctx`, or the shared default one.
pub(crate) fn client<'a>(ctx: &CarrierCtx<'a>) -> &'a reqwest::Client {
    static DEFAULT: OnceLock<reqwest::Client> = OnceLock::new();
    match ctx.http {
        Some(c) => c,
        None => DEFAULT.get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .user_agent(concat!("switchboard-numbers/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default()
        }),
    }
}

/// The `knm_errors` `by_carrier` error: `reason` is for the log only.
pub(crate) fn by_carrier(kind: CarrierKind, number: &str, reason: impl Into<String>) -> Error {
    let reason = reason.into();
    tracing::warn!(
        module = kind.module_name(),
        number,
        reason = reason.as_str(),
        "carrier refused"
    );
    Error::ByCarrier { module: kind.module_name().to_owned(), reason, number: number.to_owned() }
}

/// One answer: status and body text.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: String,
}

/// Sends `request` with `timeout`; a transport failure or a timeout is `by_carrier` (the URL
/// removed from the reason).
pub(crate) async fn send(
    kind: CarrierKind,
    number: &str,
    request: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<Reply, Error> {
    let fail = |e: reqwest::Error| {
        let e = e.without_url();
        let reason = if e.is_timeout() { "timeout".to_owned() } else { e.to_string() };
        by_carrier(kind, number, reason)
    };
    let resp = request.timeout(timeout).send().await.map_err(fail)?;
    let status = resp.status().as_u16();
    let body = resp.text().await.map_err(fail)?;
    tracing::debug!(module = kind.module_name(), status, bytes = body.len(), "carrier answered");
    Ok(Reply { status, body })
}

/// Whether a number is a US toll-free one by its NPA (Kazoo's `?IS_US_TOLLFREE`: 800, 822, 833,
/// 844, 855, 866, 877 and 880 to 889).
pub(crate) fn is_us_tollfree_npa(npa: &str) -> bool {
    matches!(npa, "800" | "822" | "833" | "844" | "855" | "866" | "877")
        || (npa.len() == 3 && npa.starts_with("88") && npa.as_bytes()[2].is_ascii_digit())
}

/// The 10-digit form of a NANP number (`+1NPANXXXXXX` → `NPANXXXXXX`); other numbers without `+`.
pub(crate) fn to_npan(number: &str) -> &str {
    number.strip_prefix("+1").or_else(|| number.strip_prefix('+')).unwrap_or(number)
}

/// A parsed XML element: local name (namespace prefix dropped), its text, its children. Enough
/// for the carriers' small answers; built with quick-xml.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Element {
    pub(crate) name: String,
    pub(crate) text: String,
    pub(crate) children: Vec<Element>,
}

impl Element {
    /// Parses a document; the root element.
    pub(crate) fn parse(xml: &str) -> Result<Element, String> {
        use quick_xml::events::Event;
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut stack: Vec<Element> = Vec::new();
        let local = |raw: &[u8]| -> String {
            let name = String::from_utf8_lossy(raw);
            name.rsplit(':').next().unwrap_or_default().to_owned()
        };
        loop {
            match reader.read_event().map_err(|e| e.to_string())? {
                Event::Start(e) => {
                    stack.push(Element { name: local(e.name().as_ref()), ..Element::default() })
                }
                Event::Empty(e) => {
                    let el = Element { name: local(e.name().as_ref()), ..Element::default() };
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => return Ok(el),
                    }
                }
                Event::Text(t) => {
                    if let Some(top) = stack.last_mut() {
                        top.text.push_str(&t.unescape().map_err(|e| e.to_string())?);
                    }
                }
                Event::CData(t) => {
                    if let Some(top) = stack.last_mut() {
                        top.text.push_str(&String::from_utf8_lossy(&t));
                    }
                }
                Event::End(_) => {
                    let mut done = stack.pop().ok_or("unbalanced end tag")?;
                    done.text = done.text.trim().to_owned();
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(done),
                        None => return Ok(done),
                    }
                }
                Event::Eof => return Err("no root element".into()),
                _ => {}
            }
        }
    }

    /// The first child named `name`.
    pub(crate) fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The children named `name`.
    pub(crate) fn children_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Element> {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The element at `path` under this one (child names).
    pub(crate) fn at(&self, path: &[&str]) -> Option<&Element> {
        path.iter().try_fold(self, |el, name| el.child(name))
    }

    /// The first element named `name` at any depth (this one included), depth first.
    pub(crate) fn find(&self, name: &str) -> Option<&Element> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }

    /// The non-empty text of the child `name`.
    pub(crate) fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str()).filter(|t| !t.is_empty())
    }
}

/// Escapes text for an XML body.
pub(crate) fn xml_escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Helpers for the carrier tests: fixture bodies, a context over a mock.

    use std::collections::BTreeMap;

    use serde_json::Value;

    use std::sync::Arc;

    use crate::carriers::external::ExternalCarrier;
    use crate::carriers::testindex::MemoryIndex;
    use crate::carriers::{CarrierCtx, CarrierKind, CarrierSettings};
    use crate::config::Config;
    use crate::doc::{NumberDoc, NumberState};

    /// The numbers a search found, in order.
    pub(crate) fn numbers(found: &crate::carriers::Found) -> Vec<&str> {
        found.rows().iter().map(|r| r.number.as_str()).collect()
    }

    /// A body from `fixtures/numbers/carriers/`.
    pub(crate) fn fixture(name: &str) -> String {
        let path = format!("{}/../../fixtures/numbers/carriers/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Everything a carrier test context borrows: `section` is every external carrier's.
    pub(crate) struct Env {
        pub(crate) config: Config,
        pub(crate) index: MemoryIndex,
        pub(crate) section: Value,
        pub(crate) settings: CarrierSettings,
        pub(crate) client: reqwest::Client,
    }

    impl Env {
        pub(crate) fn new(section: Value) -> Self {
            Env {
                config: Config::kazoo_defaults(),
                index: MemoryIndex::default(),
                settings: CarrierSettings::same_for_all(&section),
                section,
                client: reqwest::Client::new(),
            }
        }

        pub(crate) fn ctx(&self) -> CarrierCtx<'_> {
            CarrierCtx::new(&self.config, &self.index)
                .with_settings(&self.settings)
                .with_http(&self.client)
        }

        /// The typed config carrier `T` is handed.
        pub(crate) fn config_of<T: ExternalCarrier>(&self) -> Arc<T::Config> {
            self.settings.get::<T>().expect("the section reads")
        }
    }

    /// A number document for `module`.
    pub(crate) fn doc(number: &str, module: CarrierKind) -> NumberDoc {
        NumberDoc::new(
            &e164::E164::new(number).unwrap(),
            NumberState::Discovery,
            module.module_name(),
            63_700_000_000,
        )
    }

    /// The `knm_search:find/1` deadline test: `slow` is behind a mock that never answers in time, `knm_local`
    /// answers from the index; the search returns the local rows and reports `slow` timed out.
    pub(crate) async fn slow_carrier_is_left_behind(slow: CarrierKind, section: Value) {
        use crate::carriers::testindex::avail;
        use crate::carriers::SearchQuery;
        use crate::search::{find, CarrierOutcome};

        let mut config = Config::kazoo_defaults();
        config.number_search_timeout_ms = 300;
        let index = MemoryIndex::with_numbers(vec![avail("+14158867900", "knm_local")]);
        let sections: BTreeMap<CarrierKind, Value> = [(slow, section)].into_iter().collect();
        let settings = CarrierSettings::read(sections);
        let client = reqwest::Client::new();
        let ctx = CarrierCtx::new(&config, &index).with_settings(&settings).with_http(&client);
        let mut q = SearchQuery::new("+1415886", 5);
        q.account_id = Some(crate::auth::tests::acc(2));
        let started = std::time::Instant::now();
        let res = find(&[slow, CarrierKind::Local], &q, &ctx).await;
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the fan-out waited");
        assert!(matches!(res.reports[0].outcome, CarrierOutcome::TimedOut), "{:?}", res.reports);
        assert!(matches!(res.reports[1].outcome, CarrierOutcome::Answered { rows: 1 }));
        assert_eq!(res.rows.len(), 1);
        assert_eq!(res.rows[0].number.as_str(), "+14158867900");
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::Env;

    #[test]
    fn us_tollfree_npas_are_kazoos_full_set() {
        let tollfree: Vec<String> = (200..1000)
            .map(|n| n.to_string())
            .filter(|npa| super::is_us_tollfree_npa(npa))
            .collect();
        let expected = [
            "800", "822", "833", "844", "855", "866", "877", "880", "881", "882", "883", "884",
            "885", "886", "887", "888", "889",
        ];
        assert_eq!(tollfree, expected);
        assert!(!super::is_us_tollfree_npa("88"));
        assert!(!super::is_us_tollfree_npa("88*"));
    }
    use super::*;
    use serde_json::json;

    /// Config documents, the `default` section first, `kapps_config` truthiness, clear errors.
    #[test]
    fn sections() {
        assert_eq!(config_doc_id(CarrierKind::Telnyx).as_deref(), Some("number_manager.telnyx"));
        assert_eq!(
            config_doc_id(CarrierKind::VoipInnovations).as_deref(),
            Some("number_manager.voip_innovations")
        );
        assert_eq!(config_doc_id(CarrierKind::Local), None);
        for kind in CarrierKind::ALL {
            if let Some(id) = config_doc_id(kind) {
                assert_eq!(config_kind(&id), Some(kind));
            }
        }
        assert_eq!(config_kind("number_manager.bandwidth"), Some(CarrierKind::Bandwidth2));
        assert_eq!(config_kind("number_manager.local"), None);
        assert_eq!(config_kind("number_manager"), None);
        let env = Env::new(json!({"_id": "number_manager.telnyx", "user": "top",
            "default": {"user": "u", "enable_provisioning": "false", "request_timeout_ms": "250"}}));
        let s = Section::new(CarrierKind::Telnyx, &env.section);
        assert_eq!(s.string("user").unwrap().as_deref(), Some("u"));
        assert!(!s.boolean("enable_provisioning", true).unwrap());
        assert_eq!(s.timeout().unwrap(), Duration::from_millis(250));
        let env = Env::new(json!({"token": 5, "base_url": "ftp://x", "endpoints": "a"}));
        let s = Section::new(CarrierKind::Telnyx, &env.section);
        assert_eq!(s.secret("token").unwrap().expose(), "5");
        assert_eq!(s.strings("endpoints").unwrap(), vec!["a".to_owned()]);
        let err = s.base_url("base_url", "https://api.telnyx.com").unwrap_err();
        assert!(err.to_string().contains("number_manager.telnyx.base_url"), "{err}");
        assert_eq!(s.timeout().unwrap(), Duration::from_millis(DEFAULT_REQUEST_TIMEOUT_MS));
    }

    /// Credentials never print.
    #[test]
    fn secrets_are_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }

    /// Country calling codes of normalized numbers.
    #[test]
    fn calling_codes() {
        assert_eq!(calling_code("+14155550100"), Some("1"));
        assert_eq!(calling_code("+441631"), Some("44"));
        assert_eq!(calling_code("+353123"), Some("353"));
        assert_eq!(calling_code("+7495"), Some("7"));
        assert_eq!(calling_code("+"), None);
    }

    /// The small XML reader: namespaces dropped, text unescaped, broken input refused.
    #[test]
    fn xml_elements() {
        let root = Element::parse(
            "<?xml version='1.0'?><s:Env xmlns:s='x'><s:Body><a>1 &amp; 2</a><b/></s:Body></s:Env>",
        )
        .unwrap();
        assert_eq!(root.name, "Env");
        assert_eq!(root.at(&["Body", "a"]).unwrap().text, "1 & 2");
        assert!(root.find("b").is_some());
        assert!(Element::parse("<a><b></a>").is_err());
        assert!(Element::parse("not xml").is_err());
    }
}

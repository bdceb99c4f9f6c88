//! The carrier-module contract (§14, `knm_gen_carrier.erl`): the [`Carrier`] trait, the
//! [`CarrierCtx`] every call gets, and the closed [`CarrierKind`] enum mapping Kazoo module names
//! (legacy `wnm_*` and `knm_bandwidth` included) to implementations.
//!
//! # Adding a carrier
//! One new file in this folder holding the carrier's config struct and its `impl Carrier`, and one
//! arm in [`CarrierKind::carrier`] (the enum already names every Kazoo module). The external
//! carriers (`knm_telnyx`, `knm_vitelity`, `knm_voip_innovations`, `knm_bandwidth2`, `knm_other`,
//! `knm_simwood`) talk to their APIs over HTTP with the client of [`CarrierCtx::http`] (a shared,
//! TLS-verifying default when none is given), each reading its own `number_manager.<carrier>`
//! section ([`CarrierCtx::config_for`]); their common plumbing is in `external.rs`.

mod bandwidth2;
pub(crate) mod external;
mod inum;
mod inventory;
mod kazoo_stubs;
mod local;
mod managed;
mod mdn;
mod other;
mod reserved;
mod reserved_reseller;
mod simwood;
mod telnyx;
mod vitelity;
mod voip_innovations;

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use e164::E164;
use serde_json::{Map, Value};

use crate::account::AccountId;
use crate::auth::AuthBy;
use crate::config::Config;
use crate::doc::{NumberDoc, NumberState, INUM_DB, MANAGED_DB};
use crate::error::Error;

pub use bandwidth2::{pending_order_outcome, Bandwidth2, PendingOutcome, PENDING_ORDER};
pub use external::{config_doc_id, config_kind, Secret};
pub use inum::Inum;
pub use inventory::Inventory;
pub use kazoo_stubs::KazooStub;
pub use local::Local;
pub use managed::Managed;
pub use mdn::Mdn;
pub use other::Other;
pub use reserved::Reserved;
pub use reserved_reseller::ReservedReseller;
pub use simwood::Simwood;
pub use telnyx::Telnyx;
pub use vitelity::Vitelity;
pub use voip_innovations::VoipInnovations;

/// A search as a carrier receives it (`knm_search:options()`, §14.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// The normalized prefix (`+1415`): dialcode of the country ++ the prefix typed.
    pub prefix: String,
    /// How many numbers are wanted.
    pub quantity: usize,
    /// How many to skip.
    pub offset: usize,
    /// The searching account (`account_id`).
    pub account_id: Option<AccountId>,
    /// Its reseller (`reseller_id`).
    pub reseller_id: Option<AccountId>,
    /// Two-letter country (default `US`).
    pub country: String,
    /// Whether ranges ("blocks") are asked for (`knm_other`).
    pub blocks: bool,
    /// The query id results are cached under (§11.2).
    pub query_id: Option<String>,
}

impl SearchQuery {
    /// A query for `quantity` numbers under `prefix`, no account, country `US`.
    pub fn new(prefix: impl Into<String>, quantity: usize) -> Self {
        SearchQuery {
            prefix: prefix.into(),
            quantity,
            offset: 0,
            account_id: None,
            reseller_id: None,
            country: "US".into(),
            blocks: false,
            query_id: None,
        }
    }
}

/// One number a carrier offers (`{Number, Module, State, CarrierData}`, §11.2).
#[derive(Debug, Clone, PartialEq)]
pub struct FoundNumber {
    /// The number.
    pub number: E164,
    /// The module that found it (becomes `pvt_module_name` when bought).
    pub module: CarrierKind,
    /// Its state (`discovery` for carrier stock, the real state for local numbers).
    pub state: NumberState,
    /// Carrier data to keep on the number when bought.
    pub carrier_data: Map<String, Value>,
}

impl FoundNumber {
    /// The `discovery` record buying this number starts from (§11.4): state, module and carrier
    /// data of the search hit, created `now`.
    pub fn to_discovery_doc(&self, now: i64) -> NumberDoc {
        let mut doc = NumberDoc::new(&self.number, self.state, self.module.module_name(), now);
        doc.carrier_data = self.carrier_data.clone();
        doc
    }
}

/// A carrier's answer to `find_numbers` (§14.1).
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// `{ok, Results}`: numbers.
    Numbers(Vec<FoundNumber>),
    /// `{bulk, Results}`: ranges, given as their first and last numbers.
    Bulk(Vec<FoundNumber>),
}

impl Found {
    /// The rows, whichever the form.
    pub fn rows(&self) -> &[FoundNumber] {
        match self {
            Found::Numbers(r) | Found::Bulk(r) => r,
        }
    }
}

/// `info()` of a module (§14.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarrierInfo {
    /// `maximal_prefix_length`.
    pub maximal_prefix_length: usize,
}

/// The databases of the pooled carriers (§13.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pool {
    /// `numbers%2Fmanaged`, view `numbers_managed/status`.
    Managed,
    /// `numbers%2Finum`, view `numbers_inum/status`.
    Inum,
}

impl Pool {
    /// The unencoded database name.
    pub fn db(self) -> &'static str {
        match self {
            Pool::Managed => MANAGED_DB,
            Pool::Inum => INUM_DB,
        }
    }

    /// The view keyed `[pvt_account_id, pvt_state, _id]`.
    pub fn status_view(self) -> &'static str {
        match self {
            Pool::Managed => "numbers_managed/status",
            Pool::Inum => "numbers_inum/status",
        }
    }
}

/// The storage the internal carriers need, supplied by the caller (the store layer implements it
/// over the document store) so that this crate stays free of I/O.
#[async_trait]
pub trait NumberIndex: Send + Sync {
    /// Numbers in state `available` with module `module` whose id starts with `prefix`, in id
    /// order, `skip` then at most `limit` (view `numbers/status` of `to_db(prefix)`, keys
    /// `[available, module, prefix]` .. `[available, module, prefix ++ "\ufff0"]`,
    /// `include_docs`).
    ///
    /// # Errors
    /// A store failure.
    async fn available_by_module(
        &self,
        module: &str,
        prefix: &str,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<NumberDoc>, Error>;

    /// Numbers reserved in `account`'s database under `prefix` (view `numbers/list_reserved`,
    /// keys `prefix` .. `prefix ++ "\ufff0"`), re-read from their number databases.
    ///
    /// # Errors
    /// A store failure.
    async fn reserved_in_account(
        &self,
        account: &AccountId,
        prefix: &str,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<NumberDoc>, Error>;

    /// Ids of `available` numbers of `account` in a pool under `prefix` (view
    /// [`Pool::status_view`], keys `[account, available, prefix]` ..
    /// `[account, available, prefix ++ "\ufff0"]`).
    ///
    /// # Errors
    /// A store failure.
    async fn available_in_pool(
        &self,
        pool: Pool,
        account: &AccountId,
        prefix: &str,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<E164>, Error>;

    /// Sets `fields` on the pool document of `number` (`kz_datamgr:update_doc/3`; `null` removes
    /// a key), compare-and-swap with retry on conflict.
    ///
    /// # Errors
    /// A store failure (`database_error`).
    async fn update_pool_doc(
        &self,
        pool: Pool,
        number: &E164,
        fields: Map<String, Value>,
    ) -> Result<(), Error>;
}

/// What a carrier call gets besides its arguments (like Vector's `SourceContext`). Built with
/// [`CarrierCtx::new`]; new fields (the HTTP client of the external carriers) are added without
/// breaking callers.
#[non_exhaustive]
pub struct CarrierCtx<'a> {
    /// §8.1: decide, but change nothing at the carrier.
    pub dry_run: bool,
    /// `number_manager` config.
    pub config: &'a Config,
    /// The carrier's own config section (`number_manager.<carrier>`), `Null` when there is none.
    pub carrier_config: &'a Value,
    /// Storage for the internal carriers.
    pub index: &'a dyn NumberIndex,
    /// The HTTP client of the external carriers; `None`: a process-wide default client
    /// (TLS verified, connect timeout 10 s; request timeouts are per carrier).
    pub http: Option<&'a reqwest::Client>,
    /// Each carrier's `number_manager.<carrier>` section by kind, for calls that reach several
    /// carriers (the search fan-out); a kind missing here reads [`CarrierCtx::carrier_config`].
    pub carrier_configs: Option<&'a BTreeMap<CarrierKind, Value>>,
    /// Who performs the operation (`knm_bandwidth2` sends it as `CustomerOrderId`).
    pub auth_by: Option<&'a AuthBy>,
}

static NULL: Value = Value::Null;

impl<'a> CarrierCtx<'a> {
    /// A context over `config` and `index`, not a dry run, without a carrier config section.
    pub fn new(config: &'a Config, index: &'a dyn NumberIndex) -> Self {
        CarrierCtx {
            dry_run: false,
            config,
            carrier_config: &NULL,
            index,
            http: None,
            carrier_configs: None,
            auth_by: None,
        }
    }

    /// The same context as a dry run (or not).
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// The same context with the carrier's config section.
    pub fn with_carrier_config(mut self, carrier_config: &'a Value) -> Self {
        self.carrier_config = carrier_config;
        self
    }

    /// The same context with the HTTP client the external carriers use.
    pub fn with_http(mut self, client: &'a reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// The same context with every carrier's config section, by kind (see
    /// [`config_doc_id`] for the documents they come from).
    pub fn with_carrier_configs(mut self, configs: &'a BTreeMap<CarrierKind, Value>) -> Self {
        self.carrier_configs = Some(configs);
        self
    }

    /// The same context with the operation's `auth_by`.
    pub fn with_auth_by(mut self, auth_by: &'a AuthBy) -> Self {
        self.auth_by = Some(auth_by);
        self
    }

    /// The config section of `kind`: its entry in [`CarrierCtx::carrier_configs`], else
    /// [`CarrierCtx::carrier_config`].
    pub fn config_for(&self, kind: CarrierKind) -> &'a Value {
        self.carrier_configs.and_then(|m| m.get(&kind)).unwrap_or(self.carrier_config)
    }
}

/// A carrier module (`knm_gen_carrier` behaviour, §14.1).
///
/// Calls are async because most carriers talk to an API; the internal ones go through the
/// [`NumberIndex`] of the [`CarrierCtx`].
#[async_trait]
pub trait Carrier: Send + Sync {
    /// Which module this is.
    fn kind(&self) -> CarrierKind;

    /// `info()`.
    fn info(&self) -> CarrierInfo {
        CarrierInfo { maximal_prefix_length: self.kind().maximal_prefix_length() }
    }

    /// `is_local()`: whether the module handles numbers local to the system (no HTTP).
    fn is_local(&self) -> bool {
        self.kind().is_local()
    }

    /// `should_lookup_cnam()`.
    fn should_lookup_cnam(&self) -> bool {
        self.kind().should_lookup_cnam()
    }

    /// `is_number_billable(PN)`.
    fn is_number_billable(&self, _doc: &NumberDoc) -> bool {
        self.kind().is_billable()
    }

    /// `find_numbers(Prefix, Quantity, Options)`.
    ///
    /// # Errors
    /// [`Error::NotAvailable`] when the module cannot answer this query (Kazoo's
    /// `{error, not_available}`), a store failure, or the carrier's refusal.
    async fn find_numbers(&self, query: &SearchQuery, ctx: &CarrierCtx<'_>)
        -> Result<Found, Error>;

    /// `acquire_number(N)`: buys or claims the number; may update `pvt_carrier_data`. Never
    /// called under dry run by the lifecycle; implementations must still honour
    /// [`CarrierCtx::dry_run`]. The default has nothing to buy and returns the number as it is
    /// (knm_local, knm_inventory, knm_mdn, knm_reserved, knm_reserved_reseller).
    ///
    /// # Errors
    /// The carrier's refusal (`by_carrier`, `unspecified`), or a store failure.
    async fn acquire_number(
        &self,
        doc: NumberDoc,
        _ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        Ok(doc)
    }

    /// `disconnect_number(N)`: gives the number back to the carrier. The default has nothing
    /// to give back and returns the number as it is (the internal modules, knm_bandwidth2,
    /// knm_other and the Kazoo modules not ported here).
    ///
    /// # Errors
    /// The carrier's refusal (fails the release of that number), or a store failure.
    async fn disconnect_number(
        &self,
        doc: NumberDoc,
        _ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        Ok(doc)
    }

    /// `check_numbers(Nums)`: status per number as the carrier reports it. The default is
    /// Kazoo's answer of every module that cannot check (all but `knm_other`).
    ///
    /// # Errors
    /// `not_implemented` for modules that cannot check.
    async fn check_numbers(
        &self,
        _numbers: &[E164],
        _ctx: &CarrierCtx<'_>,
    ) -> Result<BTreeMap<String, String>, Error> {
        Err(check_not_implemented())
    }
}

/// Every Kazoo carrier module name this build knows, closed. Legacy names are mapped by
/// [`CarrierKind::from_module`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CarrierKind {
    /// `knm_local`.
    Local,
    /// `knm_inventory`.
    Inventory,
    /// `knm_managed`.
    Managed,
    /// `knm_mdn`.
    Mdn,
    /// `knm_reserved`.
    Reserved,
    /// `knm_reserved_reseller`.
    ReservedReseller,
    /// `knm_inum`.
    Inum,
    /// `knm_other` (external).
    Other,
    /// `knm_telnyx` (external).
    Telnyx,
    /// `knm_vitelity` (external).
    Vitelity,
    /// `knm_voip_innovations` (external).
    VoipInnovations,
    /// `knm_bandwidth2` (external). Legacy `knm_bandwidth` maps here.
    Bandwidth2,
    /// `knm_simwood` (external).
    Simwood,
    /// `knm_didww` (a stub in Kazoo).
    Didww,
    /// `knm_flowroute` (a stub in Kazoo).
    Flowroute,
    /// `knm_inteliquent` (a stub in Kazoo).
    Inteliquent,
    /// `knm_it_vocal` (a stub in Kazoo).
    ItVocal,
    /// `knm_level3` (a stub in Kazoo).
    Level3,
    /// `knm_o1` (a stub in Kazoo).
    O1,
    /// `knm_peerless` (a stub in Kazoo).
    Peerless,
    /// `knm_thinq` (a stub in Kazoo).
    Thinq,
    /// `knm_verizon` (a stub in Kazoo).
    Verizon,
    /// `knm_windstream` (a stub in Kazoo).
    Windstream,
    /// `knm_ziron` (a stub in Kazoo).
    Ziron,
    /// `knm_voxbone` (a stub in Kazoo 4.3).
    Voxbone,
}

impl CarrierKind {
    /// Every kind.
    pub const ALL: [CarrierKind; 25] = [
        CarrierKind::Local,
        CarrierKind::Inventory,
        CarrierKind::Managed,
        CarrierKind::Mdn,
        CarrierKind::Reserved,
        CarrierKind::ReservedReseller,
        CarrierKind::Inum,
        CarrierKind::Other,
        CarrierKind::Telnyx,
        CarrierKind::Vitelity,
        CarrierKind::VoipInnovations,
        CarrierKind::Bandwidth2,
        CarrierKind::Simwood,
        CarrierKind::Didww,
        CarrierKind::Flowroute,
        CarrierKind::Inteliquent,
        CarrierKind::ItVocal,
        CarrierKind::Level3,
        CarrierKind::O1,
        CarrierKind::Peerless,
        CarrierKind::Thinq,
        CarrierKind::Verizon,
        CarrierKind::Windstream,
        CarrierKind::Ziron,
        CarrierKind::Voxbone,
    ];

    /// The Kazoo module name (`knm_local`, …).
    pub fn module_name(self) -> &'static str {
        match self {
            CarrierKind::Local => "knm_local",
            CarrierKind::Inventory => "knm_inventory",
            CarrierKind::Managed => "knm_managed",
            CarrierKind::Mdn => "knm_mdn",
            CarrierKind::Reserved => "knm_reserved",
            CarrierKind::ReservedReseller => "knm_reserved_reseller",
            CarrierKind::Inum => "knm_inum",
            CarrierKind::Other => "knm_other",
            CarrierKind::Telnyx => "knm_telnyx",
            CarrierKind::Vitelity => "knm_vitelity",
            CarrierKind::VoipInnovations => "knm_voip_innovations",
            CarrierKind::Bandwidth2 => "knm_bandwidth2",
            CarrierKind::Simwood => "knm_simwood",
            CarrierKind::Didww => "knm_didww",
            CarrierKind::Flowroute => "knm_flowroute",
            CarrierKind::Inteliquent => "knm_inteliquent",
            CarrierKind::ItVocal => "knm_it_vocal",
            CarrierKind::Level3 => "knm_level3",
            CarrierKind::O1 => "knm_o1",
            CarrierKind::Peerless => "knm_peerless",
            CarrierKind::Thinq => "knm_thinq",
            CarrierKind::Verizon => "knm_verizon",
            CarrierKind::Windstream => "knm_windstream",
            CarrierKind::Ziron => "knm_ziron",
            CarrierKind::Voxbone => "knm_voxbone",
        }
    }

    /// The kind of a module name as stored or configured: `wnm_X` is read as `knm_X`,
    /// `knm_bandwidth` as `knm_bandwidth2` (§10.3, §14.1), and a bare name without prefix
    /// (`local`, as `carrier_name` and `usable_carriers` spell it) as `knm_<name>`. `None` for a
    /// module Kazoo could not load either (e.g. `knm_pacwest`).
    pub fn from_module(name: &str) -> Option<CarrierKind> {
        let (migrated, _) = crate::doc::migrate_module_name(name);
        let full = if migrated.starts_with("knm_") { migrated } else { format!("knm_{migrated}") };
        let full = if full == "knm_bandwidth" { "knm_bandwidth2".to_owned() } else { full };
        CarrierKind::ALL.into_iter().find(|k| k.module_name() == full)
    }

    /// `is_local()` (§14.1 table).
    pub fn is_local(self) -> bool {
        matches!(
            self,
            CarrierKind::Local
                | CarrierKind::Managed
                | CarrierKind::Reserved
                | CarrierKind::ReservedReseller
                | CarrierKind::Inum
        )
    }

    /// `is_number_billable/1` (§14.1 table; an unknown module is billable, §8.3).
    pub fn is_billable(self) -> bool {
        !matches!(
            self,
            CarrierKind::Local
                | CarrierKind::Inventory
                | CarrierKind::Mdn
                | CarrierKind::Reserved
                | CarrierKind::ReservedReseller
                | CarrierKind::Inum
        )
    }

    /// `should_lookup_cnam/0`. `knm_vitelity` answers its config `use_stepswitch_cnam`, default
    /// false; every other module true.
    pub fn should_lookup_cnam(self) -> bool {
        self != CarrierKind::Vitelity
    }

    /// `info()`'s `maximal_prefix_length` (§14.1 table).
    pub fn maximal_prefix_length(self) -> usize {
        match self {
            CarrierKind::Local
            | CarrierKind::Inventory
            | CarrierKind::Reserved
            | CarrierKind::ReservedReseller
            | CarrierKind::Other => 10,
            CarrierKind::Managed | CarrierKind::Inum => 15,
            CarrierKind::Mdn => 0,
            _ => 3,
        }
    }

    /// Whether this build has the module's implementation: every kind has one (the external
    /// carriers included); Kazoo's stubs behave as Kazoo's stubs do.
    pub fn is_available(self) -> bool {
        true
    }

    /// The implementation.
    pub fn carrier(self) -> Box<dyn Carrier> {
        match self {
            CarrierKind::Local => Box::new(Local),
            CarrierKind::Inventory => Box::new(Inventory),
            CarrierKind::Managed => Box::new(Managed),
            CarrierKind::Mdn => Box::new(Mdn),
            CarrierKind::Reserved => Box::new(Reserved),
            CarrierKind::ReservedReseller => Box::new(ReservedReseller),
            CarrierKind::Inum => Box::new(Inum),
            CarrierKind::Other => Box::new(Other),
            CarrierKind::Telnyx => Box::new(Telnyx),
            CarrierKind::Vitelity => Box::new(Vitelity),
            CarrierKind::VoipInnovations => Box::new(VoipInnovations),
            CarrierKind::Bandwidth2 => Box::new(Bandwidth2),
            CarrierKind::Simwood => Box::new(Simwood),
            stub => Box::new(KazooStub(stub)),
        }
    }
}

impl fmt::Display for CarrierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.module_name())
    }
}

/// `is_number_billable` of a number by its module name; an unknown module is billable (§8.3).
pub fn is_number_billable(doc: &NumberDoc) -> bool {
    CarrierKind::from_module(&doc.module_name).is_none_or(CarrierKind::is_billable)
}

/// `should_lookup_cnam/0` of a number's module, for `lookup_account`'s `inbound_cnam`; an unknown
/// module looks CNAM up (§5.10).
pub fn should_lookup_cnam(module_name: &str) -> bool {
    CarrierKind::from_module(module_name).is_none_or(CarrierKind::should_lookup_cnam)
}

/// `Not available` helper shared by the internal carriers.
pub(crate) fn not_available(kind: CarrierKind) -> Error {
    Error::NotAvailable { module: kind.module_name().to_owned() }
}

/// `{error, not_implemented}` of `check_numbers/1` for modules that cannot check.
pub(crate) fn check_not_implemented() -> Error {
    Error::Unspecified { reason: "not_implemented".into(), cause: None }
}

/// Makes sure a search prefix starts with `+` (`knm_managed:find_numbers/3`).
pub(crate) fn plus_prefix(prefix: &str) -> String {
    if prefix.starts_with('+') {
        prefix.to_owned()
    } else {
        format!("+{prefix}")
    }
}

#[cfg(test)]
pub(crate) mod testindex;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::NumberDoc;

    /// §14.1: module names, legacy mapping, static properties; vector O6 billable.
    #[test]
    fn s14_1_kinds() {
        for k in CarrierKind::ALL {
            assert_eq!(CarrierKind::from_module(k.module_name()), Some(k));
        }
        assert_eq!(CarrierKind::from_module("wnm_local"), Some(CarrierKind::Local));
        assert_eq!(CarrierKind::from_module("knm_bandwidth"), Some(CarrierKind::Bandwidth2));
        assert_eq!(CarrierKind::from_module("wnm_bandwidth"), Some(CarrierKind::Bandwidth2));
        assert_eq!(CarrierKind::from_module("bandwidth"), Some(CarrierKind::Bandwidth2));
        assert_eq!(CarrierKind::from_module("local"), Some(CarrierKind::Local));
        assert_eq!(CarrierKind::from_module("knm_pacwest"), None);
        assert!(!CarrierKind::Inventory.is_local());
        assert!(CarrierKind::Managed.is_billable() && !CarrierKind::Inum.is_billable());
        assert_eq!(CarrierKind::Mdn.maximal_prefix_length(), 0);
        assert_eq!(CarrierKind::Bandwidth2.maximal_prefix_length(), 3);
        let n = E164::new("+15551239876").unwrap();
        let mut doc = NumberDoc::new(&n, NumberState::Available, "knm_local", 1);
        assert!(!is_number_billable(&doc));
        doc.module_name = "knm_bandwidth2".into();
        assert!(is_number_billable(&doc));
        doc.module_name = "wnm_pacwest".into();
        assert!(is_number_billable(&doc));
        assert!(should_lookup_cnam("knm_pacwest") && !should_lookup_cnam("knm_vitelity"));
    }
}

//! The carrier-module contract (Kazoo's carrier modules, `knm_gen_carrier.erl`): the [`Carrier`] trait, the
//! [`CarrierCtx`] every call gets, and the closed [`CarrierKind`] enum mapping Kazoo module names
//! (legacy `wnm_*` and `knm_bandwidth` included) to implementations.
//!
//! # Adding a carrier
//! A carrier is one file of this folder declaring what it is in one place, its `const SPEC:`
//! [`CarrierSpec`] (module name, local, billable, CNAM lookup, maximal prefix length, settings
//! and the implementation); every property of [`CarrierKind`] and [`config_doc_id`] is read from
//! it. Adding one takes exactly:
//! 1. the file, say `acme.rs`, with a unit struct `Acme`, its `SPEC` (`kind: CarrierKind::Acme`,
//!    `carrier: &Acme`) and its implementation: for a carrier with an API and settings of its
//!    own, `impl ExternalCarrier for Acme` (the config struct, `read_config` from its
//!    `number_manager.acme` section, and `find`/`acquire`/`disconnect`/`check` taking that
//!    config; the trait then implements [`Carrier`]) and in the `SPEC`
//!    `config_section: Some(ConfigSection::of::<Acme>("acme"))`; otherwise `impl Carrier for
//!    Acme` and `config_section: None`;
//! 2. in this file, its `mod acme;` line and one line `Acme => acme,` in the `carriers!` list,
//!    which declares the `CarrierKind::Acme` variant, its place in [`CarrierKind::ALL`] and its
//!    arm of [`CarrierKind::spec`]. (The `mod` line stays outside the macro: rustfmt does not
//!    follow modules a macro declares, so `cargo fmt --check` would stop checking the file.)
//!
//! The test `kinds_and_specs_agree` checks every spec against its kind. The external
//! carriers (`knm_telnyx`, `knm_vitelity`, `knm_voip_innovations`, `knm_bandwidth2`, `knm_other`,
//! `knm_simwood`) talk to their APIs over HTTP with the client of [`CarrierCtx::http`] (a shared,
//! TLS-verifying default when none is given). Each one's `number_manager.<carrier>` section is
//! read once into its typed config when the store layer is built from `system_config`
//! ([`CarrierSettings`]); a call is handed that config, or the clear [`Error::Config`] the
//! section's reading gave. Their common plumbing is in `external.rs`.

// The carrier modules, one file each (declared here, not by `carriers!`, so that rustfmt sees them).
mod bandwidth2;
mod inum;
mod inventory;
mod kazoo_stubs;
mod local;
mod managed;
mod mdn;
pub(crate) mod other;
mod reserved;
mod reserved_reseller;
pub(crate) mod simwood;
pub(crate) mod telnyx;
mod vitelity;
mod voip_innovations;

pub(crate) mod external;
mod settings;

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

pub use bandwidth2::{pending_order_outcome, PendingOutcome, PENDING_ORDER};
pub use external::{config_doc_id, config_kind, Secret};
pub use settings::{CarrierSettings, ConfigSection};

/// The carrier kinds from one list: each entry names a [`CarrierKind`] variant and the module
/// whose `SPEC` describes it (`Variant => file`), or one of several specs of a module
/// (`Variant => file::NAME`). It generates the enum, [`CarrierKind::ALL`] (in the list's order)
/// and [`CarrierKind::spec`].
macro_rules! carriers {
    ($($kind:ident => $module:ident $(:: $spec:ident)?,)*) => {
        /// Every Kazoo carrier module this build knows, closed (the `carriers!` list of
        /// `carriers/mod.rs`). Legacy names are mapped by [`CarrierKind::from_module`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum CarrierKind {
            $(
                #[doc = concat!("The module of `carriers/", stringify!($module), ".rs` ",
                    "(its `SPEC` names the Kazoo module).")]
                $kind,
            )*
        }

        impl CarrierKind {
            /// Every kind, in declaration order.
            pub const ALL: [CarrierKind; [$(CarrierKind::$kind),*].len()] =
                [$(CarrierKind::$kind),*];

            /// What the module declares about itself: its `SPEC`, the one place each property
            /// of a carrier is written.
            pub fn spec(self) -> &'static CarrierSpec {
                match self {
                    $(CarrierKind::$kind => &carriers!(@spec $module $($spec)?),)*
                }
            }
        }
    };
    (@spec $module:ident) => { $module::SPEC };
    (@spec $module:ident $spec:ident) => { $module::$spec };
}

carriers! {
    Local => local,
    Inventory => inventory,
    Managed => managed,
    Mdn => mdn,
    Reserved => reserved,
    ReservedReseller => reserved_reseller,
    Inum => inum,
    Other => other,
    Telnyx => telnyx,
    Vitelity => vitelity,
    VoipInnovations => voip_innovations,
    Bandwidth2 => bandwidth2,
    Simwood => simwood,
    Didww => kazoo_stubs::DIDWW,
    Flowroute => kazoo_stubs::FLOWROUTE,
    Inteliquent => kazoo_stubs::INTELIQUENT,
    ItVocal => kazoo_stubs::IT_VOCAL,
    Level3 => kazoo_stubs::LEVEL3,
    O1 => kazoo_stubs::O1,
    Peerless => kazoo_stubs::PEERLESS,
    Thinq => kazoo_stubs::THINQ,
    Verizon => kazoo_stubs::VERIZON,
    Windstream => kazoo_stubs::WINDSTREAM,
    Ziron => kazoo_stubs::ZIRON,
    Voxbone => kazoo_stubs::VOXBONE,
}

/// A search as a carrier receives it (`knm_search:options()`, `knm_gen_carrier`).
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
    /// The query id results are cached under (`knm_search`' result rows).
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

/// One number a carrier offers (`{Number, Module, State, CarrierData}`, `knm_search`' result rows).
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
    /// The `discovery` record buying this number starts from (`knm_search:discovery/1`): state, module and carrier
    /// data of the search hit, created `now`.
    pub fn to_discovery_doc(&self, now: i64) -> NumberDoc {
        let mut doc = NumberDoc::new(&self.number, self.state, self.module.module_name(), now);
        doc.carrier_data = self.carrier_data.clone();
        doc
    }
}

/// A carrier's answer to `find_numbers` (`knm_gen_carrier`).
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

/// `info()` of a module (`knm_gen_carrier`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarrierInfo {
    /// `maximal_prefix_length`.
    pub maximal_prefix_length: usize,
}

/// The databases of the pooled carriers (Kazoo's `numbers_managed`/`numbers_inum` views).
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
    /// `knm_number_options:dry_run`: decide, but change nothing at the carrier.
    pub dry_run: bool,
    /// `number_manager` config.
    pub config: &'a Config,
    /// Each external carrier's settings, read once from its `number_manager.<carrier>` section
    /// (each carrier's defaults when none is given).
    pub settings: &'a CarrierSettings,
    /// Storage for the internal carriers.
    pub index: &'a dyn NumberIndex,
    /// The HTTP client of the external carriers; `None`: a process-wide default client
    /// (TLS verified, connect timeout 10 s; request timeouts are per carrier).
    pub http: Option<&'a reqwest::Client>,
    /// Who performs the operation (`knm_bandwidth2` sends it as `CustomerOrderId`).
    pub auth_by: Option<&'a AuthBy>,
}

impl<'a> CarrierCtx<'a> {
    /// A context over `config` and `index`, not a dry run, every carrier with its default
    /// settings.
    pub fn new(config: &'a Config, index: &'a dyn NumberIndex) -> Self {
        CarrierCtx {
            dry_run: false,
            config,
            settings: CarrierSettings::defaults(),
            index,
            http: None,
            auth_by: None,
        }
    }

    /// The same context as a dry run (or not).
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// The same context with these carrier settings (see [`config_doc_id`] for the documents
    /// they are read from).
    pub fn with_settings(mut self, settings: &'a CarrierSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The same context with the HTTP client the external carriers use.
    pub fn with_http(mut self, client: &'a reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// The same context with the operation's `auth_by`.
    pub fn with_auth_by(mut self, auth_by: &'a AuthBy) -> Self {
        self.auth_by = Some(auth_by);
        self
    }
}

/// A carrier module (`knm_gen_carrier` behaviour, `knm_gen_carrier`).
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

    /// `acquire_number(N)`: buys or claims the number; may update `pvt_carrier_data`. Called
    /// through [`CarrierKind::acquire`], which answers a dry run itself: implementations do not
    /// check [`CarrierCtx::dry_run`]. The default has nothing to buy and returns the number as it is
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

    /// `disconnect_number(N)`: gives the number back to the carrier (called through
    /// [`CarrierKind::disconnect`], which answers a dry run itself). The default has nothing
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

/// What a carrier module declares about itself, in one place: each module's `const SPEC`.
#[derive(Clone, Copy)]
pub struct CarrierSpec {
    /// The kind it implements.
    pub kind: CarrierKind,
    /// The Kazoo module name (`knm_local`, …), as stored in `pvt_module_name`.
    pub module_name: &'static str,
    /// `is_local()`: whether the module handles numbers local to the system (no HTTP).
    pub is_local: bool,
    /// `is_number_billable/1`.
    pub is_billable: bool,
    /// `should_lookup_cnam/0`.
    pub lookup_cnam: bool,
    /// `info()`'s `maximal_prefix_length`.
    pub maximal_prefix_length: usize,
    /// The module's own settings: the document `number_manager.<name>` (`telnyx`, …) and how it
    /// is read; `None` for a module without settings of its own.
    pub config_section: Option<ConfigSection>,
    /// The implementation.
    pub carrier: &'static dyn Carrier,
}

impl fmt::Debug for CarrierSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CarrierSpec")
            .field("module_name", &self.module_name)
            .field("is_local", &self.is_local)
            .field("is_billable", &self.is_billable)
            .field("lookup_cnam", &self.lookup_cnam)
            .field("maximal_prefix_length", &self.maximal_prefix_length)
            .field("config_section", &self.config_section.map(|s| s.name))
            .finish()
    }
}

impl CarrierKind {
    /// The Kazoo module name (`knm_local`, …).
    pub fn module_name(self) -> &'static str {
        self.spec().module_name
    }

    /// The kind of a module name as stored or configured: `wnm_X` is read as `knm_X`,
    /// `knm_bandwidth` as `knm_bandwidth2` (`knm_phone_number:from_json/1`, `knm_gen_carrier`), and a bare name without prefix
    /// (`local`, as `carrier_name` and `usable_carriers` spell it) as `knm_<name>`. `None` for a
    /// module Kazoo could not load either (e.g. `knm_pacwest`).
    pub fn from_module(name: &str) -> Option<CarrierKind> {
        let (migrated, _) = crate::doc::migrate_module_name(name);
        let full = if migrated.starts_with("knm_") { migrated } else { format!("knm_{migrated}") };
        let full = if full == "knm_bandwidth" { "knm_bandwidth2".to_owned() } else { full };
        CarrierKind::ALL.into_iter().find(|k| k.module_name() == full)
    }

    /// `is_local()` (`knm_gen_carrier` table).
    pub fn is_local(self) -> bool {
        self.spec().is_local
    }

    /// `is_number_billable/1` (`knm_gen_carrier` table; an unknown module is billable, `knm_numbers:update_services/1`).
    pub fn is_billable(self) -> bool {
        self.spec().is_billable
    }

    /// `should_lookup_cnam/0`. `knm_vitelity` answers its config `use_stepswitch_cnam`, default
    /// false; every other module true.
    pub fn should_lookup_cnam(self) -> bool {
        self.spec().lookup_cnam
    }

    /// `info()`'s `maximal_prefix_length` (`knm_gen_carrier` table).
    pub fn maximal_prefix_length(self) -> usize {
        self.spec().maximal_prefix_length
    }

    /// Whether this build has the module's implementation: every kind has one (the external
    /// carriers included); Kazoo's stubs behave as Kazoo's stubs do.
    pub fn is_available(self) -> bool {
        true
    }

    /// The implementation.
    pub fn carrier(self) -> &'static dyn Carrier {
        self.spec().carrier
    }

    /// `acquire_number(N)` of this module as the store calls it: the one place the dry run
    /// (`knm_number_options:dry_run`) is honoured for every carrier, which then buys nothing and returns the number as
    /// it is.
    ///
    /// # Errors
    /// The carrier's refusal, or a store failure.
    pub async fn acquire(self, doc: NumberDoc, ctx: &CarrierCtx<'_>) -> Result<NumberDoc, Error> {
        if ctx.dry_run {
            return Ok(doc);
        }
        self.carrier().acquire_number(doc, ctx).await
    }

    /// `disconnect_number(N)` of this module as the store calls it; under dry run nothing is
    /// given back and the number is returned as it is.
    ///
    /// # Errors
    /// The carrier's refusal, or a store failure.
    pub async fn disconnect(
        self,
        doc: NumberDoc,
        ctx: &CarrierCtx<'_>,
    ) -> Result<NumberDoc, Error> {
        if ctx.dry_run {
            return Ok(doc);
        }
        self.carrier().disconnect_number(doc, ctx).await
    }
}

impl fmt::Display for CarrierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.module_name())
    }
}

/// `is_number_billable` of a number by its module name; an unknown module is billable (`knm_numbers:update_services/1`).
pub fn is_number_billable(doc: &NumberDoc) -> bool {
    CarrierKind::from_module(&doc.module_name).is_none_or(CarrierKind::is_billable)
}

/// `should_lookup_cnam/0` of a number's module, for `lookup_account`'s `inbound_cnam`; an unknown
/// module looks CNAM up (`knm_number:lookup_account/1`).
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

    /// `knm_gen_carrier`: module names, legacy mapping, static properties; vector O6 billable.
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

    /// Each module's `SPEC` is consistent with its kind: `ALL` lists every kind once in
    /// declaration order, the spec and its implementation name the kind, module names are
    /// Kazoo's, a config section is `number_manager.<name without knm_>` and only external
    /// modules have one, and the `knm_gen_carrier` table's prefix lengths hold.
    #[test]
    fn kinds_and_specs_agree() {
        for (i, kind) in CarrierKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i, "{kind:?} is out of place in ALL");
            let spec = kind.spec();
            assert_eq!(spec.kind, kind);
            assert_eq!(spec.carrier.kind(), kind, "{spec:?}");
            let bare = spec.module_name.strip_prefix("knm_").expect("a knm_ module name");
            assert!(
                !bare.is_empty()
                    && bare
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            );
            if let Some(section) = spec.config_section {
                assert_eq!(section.name, bare, "{spec:?}");
                assert!(!spec.is_local, "{spec:?}: a local module has no carrier settings");
                assert_eq!(config_kind(&format!("number_manager.{}", section.name)), Some(kind));
            }
            assert_eq!(
                config_doc_id(kind),
                spec.config_section.map(|s| format!("number_manager.{}", s.name))
            );
            let carrier = kind.carrier();
            assert_eq!(carrier.info().maximal_prefix_length, spec.maximal_prefix_length);
            assert_eq!(carrier.is_local(), spec.is_local);
            assert_eq!(carrier.should_lookup_cnam(), spec.lookup_cnam);
        }
        assert_eq!(CarrierKind::ALL.len(), CarrierKind::Voxbone as usize + 1);
        let prefix = |k: CarrierKind| k.maximal_prefix_length();
        assert_eq!(prefix(CarrierKind::Local), 10);
        assert_eq!(prefix(CarrierKind::Other), 10);
        assert_eq!(prefix(CarrierKind::Managed), 15);
        assert_eq!(prefix(CarrierKind::Inum), 15);
        assert_eq!(prefix(CarrierKind::Telnyx), 3);
        assert_eq!(prefix(CarrierKind::Didww), 3);
    }
}

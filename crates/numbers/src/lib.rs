//! Kazoo-compatible phone-number management: number documents as Kazoo 4.3 stores them, the
//! lifecycle state machine deciding every transition, and the carrier modules behind one trait.
//!
//! # Brief overview
//! - [`NumberDoc`] / [`NumberState`]: the typed number document (`knm_phone_number`'s document), with load-time migration
//!   of older versions (`knm_phone_number:from_json/1`) and the public JSON (`knm_phone_number:to_public_json/1`).
//! - [`transition`]: decides one [`Operation`] on one number (`knm_number_states` and `knm_numbers`) and returns a [`Decision`] —
//!   the would-be document, the [`CarrierCall`] to make and the [`Write`]s to perform — or the
//!   `knm_errors` [`Error`]. [`transition_many`] is the bulk form (`knm_numbers`' bulk result shape, `cb_phone_numbers_v2`'s success replies).
//! - [`Carrier`] / [`CarrierKind`]: the carrier-module contract (Kazoo's carrier modules) and the closed set of
//!   Kazoo module names; [`search`] fans a search out to the configured carriers (`knm_search`).
//! - [`generate`]: managed / inum number generation and CSV import for `knm_inventory` (`kazoo_number_manager_maintenance:generate_numbers/4`).
//! - [`features`] / [`providers`]: which features a number may have (`knm_providers:list_available_features/1`) and the feature
//!   providers run on every save (`knm_providers:exec/2` and the feature providers it runs) — the document they produce, and the external
//!   calls (Telnyx / Dash e911, Telnyx CNAM) as [`ProviderCall`]s the store layer performs.
//!
//! - [`store`]: the I/O edge over a `docstore::SharedStore` — [`store::NumberStore`] loads
//!   documents, calls [`transition`], performs the effects with `_rev` compare-and-swap, and on
//!   a conflict re-reads and decides again; bulk generation/import; [`store::StoreIndex`] is the
//!   [`NumberIndex`] the internal carriers use.
//! - [`inbound`]: the live number → account table (`identify`, stepswitch's on-net check);
//!   [`crawler`]: the Kazoo's number crawler (`knm_number_crawler`) lifecycle reactor.
//!
//! Everything above [`store`] is pure: it decides, it does not read or write CouchDB.
//!
//! ```
//! use numbers::{transition, AccountId, AccountMap, AuthBy, Config, Ctx, NumberDoc, NumberState};
//! use numbers::Operation;
//! use numbers::lifecycle::Move;
//!
//! let config = Config::kazoo_defaults();
//! let accounts = AccountMap::new();
//! let ctx = Ctx { config: &config, accounts: &accounts, auth_by: Some(&AuthBy::System),
//!                 dry_run: false, mdn_run: false, now: 63_700_000_000 };
//! let number = e164::E164::new("+14158867900").unwrap();
//! let mut doc = NumberDoc::new(&number, NumberState::Available, "knm_local", 63_600_000_000);
//! doc.rev = Some("1-abc".into());
//! let op = Operation::Move(Move {
//!     assign_to: Some(AccountId::parse("account0000000000000000000000002").unwrap()),
//!     ..Move::default()
//! });
//! let decision = transition(&number, Some(&doc), &op, &ctx).unwrap();
//! assert_eq!(decision.doc.state, NumberState::InService);
//! assert_eq!(decision.writes.len(), 2); // the number db and the owner's account db
//! ```

#![deny(missing_docs)]

mod account;
pub mod auth;
pub mod carriers;
mod config;
pub mod country;
pub mod crawler;
mod doc;
mod error;
pub mod features;
pub mod generate;
pub mod inbound;
pub mod lifecycle;
pub mod providers;
pub mod search;
pub mod store;

pub use account::AccountId;
pub use auth::{AccountInfo, AccountMap, Accounts, AuthBy};
pub use carriers::{Carrier, CarrierCtx, CarrierKind, Found, FoundNumber, NumberIndex};
pub use config::Config;
pub use doc::{
    encoded_number_db, gregorian_seconds, number_db, NumberDoc, NumberState, INUM_DB, KNM_LOCAL,
    KNM_MDN, MANAGED_DB,
};
pub use error::Error;
pub use lifecycle::{
    lookup_account, operation_for_command, split_reconcilable, transition, transition_many,
    AccountLookup, BulkOutcome, CarrierCall, Ctx, Decision, Operation, PublicFields, Write,
    MAX_ATTEMPTS,
};
pub use providers::{FeatureCtx, Provider, ProviderCall};

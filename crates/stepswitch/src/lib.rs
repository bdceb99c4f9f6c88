//! Kazoo-compatible carrier routing: resource documents compiled into route tables that turn
//! a dialled number into an ordered list of carrier endpoints (Kazoo's `stepswitch`).
//!
//! # Brief overview
//!
//! - [`ResourceDoc`]: a resource document of db `offnet` or an account db, every field typed.
//! - [`compile`]: one scope's documents → a [`RouteTable`] plus [`Diagnostic`]s (`stepswitch_resources`' compilation);
//!   [`rebuild`]: the same from the scope's previous table, compiling only the changed documents
//!   when the rest of the table can be shared.
//! - [`RouteTable`]: the compiled resources with a literal-prefix index for fast lookups.
//! - [`route`]: a [`RouteRequest`] against [`Tables`] → [`RouteAnswer`] with the [`Endpoint`]s
//!   in final order (`stepswitch_resources:endpoints/2`); an endpoint is a cheap typed handle whose
//!   [`Endpoint::to_json`] is Kazoo's endpoint object; [`RouteAnswer::write_json`] writes the
//!   same JSON from fragments prepared per gateway when the table was compiled.
//!
//! Everything above is pure. The one I/O module is [`reactor`]: it follows `offnet`, the
//! account databases, `system_config` and `accounts` through docstore, rebuilds only the table a
//! change touches and swaps it in atomically ([`reactor::spawn`] → [`reactor::Routing`]);
//! [`reactor::load_once`] reads the tables once for one-shot commands. Rule numbers cite
//! Kazoo's stepswitch behaviour.
//!
//! ```
//! use std::sync::Arc;
//! use serde_json::json;
//! use stepswitch::{compile, route, Config, RouteRequest, Scope, Tables};
//!
//! let config = Config::kazoo_defaults();
//! let docs = [
//!     json!({"_id": "a", "pvt_type": "resource", "weight_cost": 5,
//!            "rules": ["^\\+1(\\d{10})$"], "gateways": [{"server": "a.example.com"}]}),
//!     json!({"_id": "b", "pvt_type": "resource", "weight_cost": 1,
//!            "rules": ["^\\+1415(\\d{7})$"], "gateways": [{"server": "b.example.com"}]}),
//! ];
//! let (table, diagnostics) = compile(Scope::Global, &docs, &[], &config);
//! assert!(diagnostics.is_empty());
//! let mut tables = Tables::new(Arc::new(config));
//! tables.set_table(Arc::new(table));
//! let answer = route(&tables, &RouteRequest::new("+14155550100"));
//! let routes: Vec<String> = answer.endpoints.iter().map(|ep| ep.dial_string()).collect();
//! assert_eq!(routes, ["sip:5550100@b.example.com", "sip:4155550100@a.example.com"]);
//! ```
#![deny(missing_docs)]

mod bridge;
mod chunks;
mod compile;
mod config;
mod endpoint;
mod explain;
mod formatters;
mod hash;
pub mod reactor;
mod resource;
mod route;
mod simple;
mod table;
mod text;
mod work;

pub use bridge::{avoid_privacy_if_emergency, correct_shortdial, ShortdialInput};
pub use compile::{compile, compile_docs, compile_parsed, rebuild, rule_diagnostics, Rebuilt};
pub use config::{Config, STEPSWITCH_DOC_ID};
pub use e164::Diagnostic;
pub use endpoint::{Endpoint, EndpointJson};
pub use explain::{
    explain, Explanation, OrderEntry, ResourceExplanation, RuleExplanation, RuleOutcome,
    SkipReason, TableSkip, Verdict,
};
pub use formatters::{apply_formatters, Direction};
pub use resource::{
    kazoo_integer, CallerIdOptions, CodecOptions, DynamicParameter, GatewayDoc, GatewayStrategy,
    InviteParameters, Media, ParsedResource, PrivacyOptions, ResourceClassifier, ResourceDoc,
};
pub use route::{
    is_emergency_endpoint, is_emergency_test_call, reverse_lookup, route, route_to, AccountTree,
    InboundRequest, ReverseMatch, RouteAnswer, RouteRequest, Tables,
};
pub use table::{
    select_capture, Gateway, Proxy, Resource, Resources, RouteTable, Rule, RuleText, Scope,
    Selected,
};
pub use text::write_sip_uris;

/// Errors of this crate. Compilation and routing never fail as a whole (partial success is
/// a [`Diagnostic`] list); only parsing a single document, and the reactor's reads, can.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The value is not a JSON object.
    #[error("{what} is not a JSON object")]
    NotAnObject {
        /// What was expected.
        what: String,
    },
    /// A document without a non-empty string `_id`.
    #[error("document has no _id")]
    MissingId,
    /// The store failed (the reactor's reads; [`reactor::load_once`]).
    #[error(transparent)]
    Store(#[from] docstore::Error),
    /// A manual reload could not re-read a database; the previous table stays live.
    #[error("cannot re-read {db}: {message}")]
    Unavailable {
        /// The database.
        db: String,
        /// The store's error, rendered.
        message: String,
    },
    /// The reactor has stopped (shut down).
    #[error("the routing reactor has stopped")]
    Stopped,
}

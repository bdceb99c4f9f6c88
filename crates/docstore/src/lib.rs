//! CouchDB access for Switchboard: the one storage contract the engines use, two backends behind it,
//! and a resumable change follower.
//!
//! # Brief overview
//! - [`DocStore`]: the contract (databases, documents with `_rev` compare-and-swap, `_bulk_docs`,
//!   `_all_docs`, the normal and live change feeds, `_local` documents, views where the backend
//!   has them).
//! - [`CouchStore`] (CouchDB over HTTP, built from a [`CouchConfig`]) and [`EmbeddedStore`] (one
//!   SQLite file, no server): the two backends.
//! - [`follow`]: a resumable stream of one database's changes ([`FollowEvent`]), with
//!   reconnects, heartbeat liveness and explicit resyncs; [`fleet()`] follows every database of a
//!   kind from one `_db_updates` feed.
//! - [`Reflect`]: what a consumer keeps in memory of a database, driven by [`reflect`] (one
//!   database) or [`reflect_fleet`] (every database of a kind), on the one [`FeedOptions`].
//! - [`DbName`], [`Seq`], [`Rev`]: names, opaque update sequences and revisions as types.
//! - [`Error`]: the one error type of this crate.
//!
//! - [`decode`]: what CouchDB sends, decoded whatever a document holds (lone surrogates, deep
//!   nesting, wrong types): a row that cannot be decoded is skipped with a [`RowIssue`], never
//!   failing its page; [`FeedBoard`] gathers followers' health and row issues for status and
//!   health checks.
//! - [`naming`] (Kazoo's database names, [`AccountId`]), [`selector`] (Mango matching) and
//!   [`deploy`] (the design documents, idempotently; Kazoo's only where missing) and [`keep`]
//!   (deploys them into every matching database as it appears, and puts back what was removed).
//! - [`Lease`]: which of several processes sharing a store does a periodic job (a `_rev` CAS
//!   on one document with an expiry).
//! - [`live`]: a shared database (`accounts`, `system_config`) followed once and published
//!   through `ArcSwap` for every consumer ([`SharedDocs`]).
//!
//! This crate knows Kazoo's database names but nothing about what resources or numbers mean: it
//! moves JSON documents.

#![deny(missing_docs)]

mod couch;
pub mod decode;
mod design;
mod design_keeper;
mod embedded;
mod error;
mod fleet;
mod follow;
mod health;
mod lease;
pub mod live;
pub mod naming;
mod retry;
pub mod selector;
mod snapshot;
mod store;
mod types;
mod update_log;

pub use couch::{AuthMode, CouchConfig, CouchStore, DEFAULT_MAX_REQUESTS, DEFAULT_REQUEST_TIMEOUT};
pub use design::{deploy, is_own, DeployReport, DesignKind, OWN_PREFIX};
pub use design_keeper::{keep, DesignKeeper};
pub use embedded::{EmbeddedStore, EMBEDDED_FILE_NAME};
pub use error::{Error, Result};
pub use fleet::{
    backoff, fleet, Fleet, FleetEvent, FleetMode, FleetOptions, FleetStatus, DEFAULT_CONCURRENCY,
};
pub use follow::{
    follow, reflect, reflect_fleet, FeedOptions, FleetReply, FleetRequest, FollowEvent,
    FollowOptions, Follower, FollowerState, FollowerStatus, Reflect, ResyncReason, StatusHandle,
    WhenDbMissing,
};
pub use health::{BoardReport, FeedBoard, Trouble, MAX_ISSUES};
pub use lease::Lease;
pub use live::{Derived, LiveDocs, LiveSnapshot, SharedDocs};
pub use naming::AccountId;
pub use retry::{cas_backoff, cas_pause, CAS_ATTEMPTS, CAS_BACKOFF_BASE, CAS_BACKOFF_CAP};
pub use snapshot::read_all_docs;
pub use store::{DbUpdateStream, DocStore, FeedStream, SharedStore};
pub use types::{
    AllDocsPage, AllDocsQuery, AllDocsRow, BulkItem, Change, ChangesPage, ChangesQuery, DbInfo,
    DbName, DbUpdate, DbUpdateKind, FeedEvent, FeedQuery, Fields, Rev, RowAction, RowIssue, Seq,
    ViewQuery, ViewRow,
};

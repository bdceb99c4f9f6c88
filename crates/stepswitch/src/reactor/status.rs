//! What the reactor reports: the status of its tables, followed databases and start phase,
//! and the book the tasks keep it in.

use std::collections::BTreeMap;
use std::time::SystemTime;

use docstore::{RowIssue, Seq, Trouble};
use serde::Serialize;
use serde_json::Value;

use super::{Routing, Shared, Source};
use crate::{Diagnostic, Scope};

/// One compile diagnostic, as the status reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompileError {
    /// The document (`_id`) the problem is in (`stepswitch` / `number_manager` for the config).
    pub resource_id: String,
    /// The field, e.g. `rules`.
    pub field: String,
    /// The position in the field's list, when there is one.
    pub index: Option<usize>,
    /// What was wrong and what was done about it.
    pub message: String,
}

impl CompileError {
    /// Whether this is a quarantined rule (its message says so first).
    pub fn is_quarantine(&self) -> bool {
        self.message.starts_with("quarantined")
    }
}

impl From<&Diagnostic> for CompileError {
    fn from(d: &Diagnostic) -> CompileError {
        CompileError {
            resource_id: d.doc_id.clone(),
            field: d.field.clone(),
            index: d.index,
            message: d.message.clone(),
        }
    }
}

/// The status of one route table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableStatus {
    /// `global` or `local`.
    pub scope: &'static str,
    /// The account of a local table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// Compiled resources (classifier copies counted).
    pub resources: usize,
    /// Rules of those resources.
    pub rules: usize,
    /// The database sequence the table reflects (opaque, as the server gave it).
    pub last_seq: Option<Value>,
    /// When the table was last built (RFC 3339, UTC).
    pub built_at: Option<String>,
    /// How long the last build took, in milliseconds.
    pub build_ms: f64,
    /// How many times the table was built.
    pub builds: u64,
    /// The diagnostics of the last build, then the rules lookups quarantined since.
    pub errors: Vec<CompileError>,
    /// How many of `errors` are quarantined rules (refused at compile time as catastrophic,
    /// or out of their backtracking budget on a lookup).
    pub quarantined: usize,
}

/// The status of one followed database.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceStatus {
    /// The database.
    pub db: String,
    /// Whether the derived state reflects the database as of its last catch-up.
    pub caught_up: bool,
    /// The last read or feed error, while the database cannot be read or followed.
    pub last_error: Option<String>,
    /// Since when it has been failing (RFC 3339, UTC), while it is.
    pub error_since: Option<String>,
}

/// How far the start has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The config, the accounts or `offnet` have not been read yet: routing answers 503.
    Starting,
    /// Global routing (`offnet`) is served; account tables are still loading in the background
    /// (a route naming an account whose table is not loaded yet loads it first).
    OffnetReady,
    /// Every account database there was at start has been read once. Stays `ready`: whether
    /// everything is current now is [`RoutingStatus::caught_up`].
    Ready,
}

/// The account databases, followed together (see [`docstore::fleet`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountDbs {
    /// How changes are learnt: `starting`, `feed` (`_db_updates`) or `poll` (listing).
    pub mode: &'static str,
    /// Account databases known.
    pub dbs: usize,
    /// Of those, read at least once.
    pub loaded: usize,
    /// Waiting to be read or being read.
    pub pending: usize,
}

impl From<Option<docstore::FleetStatus>> for AccountDbs {
    fn from(status: Option<docstore::FleetStatus>) -> AccountDbs {
        let Some(status) = status else {
            return AccountDbs { mode: "starting", dbs: 0, loaded: 0, pending: 0 };
        };
        let mode = match status.mode {
            docstore::FleetMode::Starting => "starting",
            docstore::FleetMode::Feed => "feed",
            docstore::FleetMode::Poll => "poll",
        };
        AccountDbs { mode, dbs: status.dbs, loaded: status.loaded, pending: status.pending }
    }
}

/// What [`Routing::status`] reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoutingStatus {
    /// How far the start has come.
    pub phase: Phase,
    /// Every followed database has been read and built at least once and is caught up, and
    /// none is failing now.
    pub caught_up: bool,
    /// The global table, the config and the accounts have been read and built at least once:
    /// routing answers (until then `/route` answers 503, never an empty list).
    pub loaded: bool,
    /// Some followed database cannot be read or followed now (reconnecting, silent past its
    /// heartbeats, or its reads failing): the tables may be stale. See `trouble`.
    pub degraded: bool,
    /// The databases that cannot be read or followed now, with the reason and since when.
    pub trouble: Vec<Trouble>,
    /// Documents that could not be decoded as stored: skipped (not routed) or repaired (lone
    /// surrogates replaced, too-deep values cut), by database and id; the latest 100.
    pub row_issues: Vec<RowIssue>,
    /// Rows skipped since start.
    pub skipped_rows: u64,
    /// Rows repaired since start.
    pub repaired_rows: u64,
    /// Bumped on every swap (see [`Routing::generations`]).
    pub generation: u64,
    /// The route tables: the global one first, then local ones by account id.
    pub tables: Vec<TableStatus>,
    /// Diagnostics of `system_config/stepswitch` and `system_config/number_manager`.
    pub config_errors: Vec<CompileError>,
    /// Databases named like account databases (`account/…`) whose name holds no account id
    /// (see [`docstore::naming::AccountId`]): not followed, so no local table is built from
    /// them. An account's monthly databases (`…-YYYYMM`) are not account databases and are not
    /// listed.
    pub db_errors: Vec<CompileError>,
    /// Accounts known to the hunt-account check (docs of db `accounts`).
    pub accounts: usize,
    /// The databases followed one by one (`system_config`, `accounts`, `offnet`,
    /// `dedicated_ips`).
    pub sources: Vec<SourceStatus>,
    /// The account databases.
    pub account_dbs: AccountDbs,
}

#[derive(Default)]
pub(super) struct TableBook {
    pub(super) last_seq: Option<Seq>,
    pub(super) built_at: Option<SystemTime>,
    pub(super) build_ms: f64,
    pub(super) builds: u64,
    pub(super) errors: Vec<CompileError>,
}

#[derive(Default)]
pub(super) struct Book {
    pub(super) tables: BTreeMap<Scope2, TableBook>,
    pub(super) sources: BTreeMap<Source, SourceStatus>,
    pub(super) config_errors: Vec<CompileError>,
    /// `account/…` databases that hold no account id, by name.
    pub(super) db_errors: BTreeMap<String, CompileError>,
    /// The initial database listing is done and its sources spawned.
    pub(super) discovered: bool,
    /// Account docs read from db `accounts`.
    pub(super) accounts: usize,
    /// The accounts have been built at least once.
    pub(super) accounts_built: bool,
    /// The config has been built at least once.
    pub(super) config_built: bool,
    /// The account databases' fleet, once it started.
    pub(super) fleet: Option<docstore::FleetStatus>,
    /// Every account database there was at start has been read once.
    pub(super) accounts_loaded_once: bool,
}

/// `Scope` ordered: global first, then accounts by id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Scope2 {
    Global,
    Local(String),
}

impl From<&Scope> for Scope2 {
    fn from(s: &Scope) -> Scope2 {
        match s {
            Scope::Global => Scope2::Global,
            Scope::Local { account_id } => Scope2::Local(account_id.clone()),
        }
    }
}

impl Routing {
    /// Status of every table and followed database.
    pub fn status(&self) -> RoutingStatus {
        let tables = self.shared.current.load_full();
        let generation = *self.shared.generation.borrow();
        let report = self.shared.board.report();
        let book = self.shared.book.lock().expect("book lock");
        let sources: Vec<SourceStatus> = book
            .sources
            .values()
            .map(|s| {
                let mut s = s.clone();
                if let Some(trouble) = report.trouble.iter().find(|t| t.db == s.db) {
                    s.caught_up = false;
                    s.last_error = Some(trouble.reason.clone());
                    s.error_since = Some(trouble.since.clone());
                }
                s
            })
            .collect();
        let fleet = book.fleet.clone();
        let caught_up = book.discovered
            && fleet.as_ref().is_some_and(docstore::FleetStatus::caught_up)
            && sources.iter().all(|s| s.caught_up)
            && !report.degraded();
        let loaded =
            book.config_built && book.accounts_built && book.tables.contains_key(&Scope2::Global);
        let phase = match (loaded, book.accounts_loaded_once) {
            (false, _) => Phase::Starting,
            (true, false) => Phase::OffnetReady,
            (true, true) => Phase::Ready,
        };
        let mut out = Vec::new();
        for (scope, entry) in &book.tables {
            let (kind, account_id, table) = match scope {
                Scope2::Global => ("global", None, Some(&tables.global)),
                Scope2::Local(id) => ("local", Some(id.clone()), tables.local.get(id)),
            };
            let Some(table) = table else { continue };
            let errors: Vec<CompileError> = entry
                .errors
                .iter()
                .cloned()
                .chain(table.quarantined().iter().map(CompileError::from))
                .collect();
            out.push(TableStatus {
                scope: kind,
                account_id,
                resources: table.len(),
                rules: table.resources().iter().map(|r| r.rules.len()).sum(),
                last_seq: entry.last_seq.as_ref().map(|s| s.as_json().clone()),
                built_at: entry.built_at.map(|t| humantime::format_rfc3339_millis(t).to_string()),
                build_ms: entry.build_ms,
                builds: entry.builds,
                quarantined: errors.iter().filter(|it| it.is_quarantine()).count(),
                errors,
            });
        }
        RoutingStatus {
            phase,
            caught_up,
            loaded,
            degraded: report.degraded(),
            trouble: report.trouble,
            row_issues: report.issues,
            skipped_rows: report.skipped_rows,
            repaired_rows: report.repaired_rows,
            generation,
            tables: out,
            config_errors: book.config_errors.clone(),
            db_errors: book.db_errors.values().cloned().collect(),
            accounts: book.accounts,
            sources,
            account_dbs: AccountDbs::from(fleet),
        }
    }

    /// The followers' and reads' trouble and the documents they could not decode.
    pub fn feeds(&self) -> docstore::BoardReport {
        self.shared.board.report()
    }

    /// Whether the global table, the config and the accounts have been built at least once
    /// (see [`RoutingStatus::loaded`]).
    pub fn is_loaded(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.shared.loaded.load(Ordering::Acquire) {
            return true;
        }
        let book = self.shared.book.lock().expect("book lock");
        let loaded =
            book.config_built && book.accounts_built && book.tables.contains_key(&Scope2::Global);
        if loaded {
            self.shared.loaded.store(true, Ordering::Release);
        }
        loaded
    }

    /// How far the start has come (see [`Phase`]).
    pub fn phase(&self) -> Phase {
        let loaded = self.is_loaded();
        match (loaded, self.shared.all_accounts_loaded.load(std::sync::atomic::Ordering::Acquire)) {
            (false, _) => Phase::Starting,
            (true, false) => Phase::OffnetReady,
            (true, true) => Phase::Ready,
        }
    }

    /// Whether every followed database has been read, built and caught up.
    pub fn is_caught_up(&self) -> bool {
        self.status().caught_up
    }
}

impl Shared {
    pub(super) fn note_source(&self, source: &Source, change: impl FnOnce(&mut SourceStatus)) {
        if let Some(status) = self.book.lock().expect("book lock").sources.get_mut(source) {
            change(status);
        }
    }
}

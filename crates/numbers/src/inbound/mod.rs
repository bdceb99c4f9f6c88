//! The inbound table: number → owning account, state, `used_by`, features — built from every
//! number database and kept live from their changes. Stepswitch's on-net check and
//! `identify` (`knm_number:lookup_account/1`) read it without touching the store.
//!
//! [`InboundTable::start`] follows every number database with one [`docstore::fleet`]: each is
//! read from the start (so a fresh process rebuilds the table), then only the databases the
//! server's `_db_updates` names are read again, since their last sequence; no live feed per
//! database. The pools (`numbers/managed`, `numbers/inum`) hold pool records, not routable
//! numbers, and are not read. The reads ask for the fields the table reads only
//! ([`TABLE_FIELDS`]), so the store does not decode the rest of each document.
//!
//! # Reads never wait
//! The table is an immutable snapshot behind an atomic pointer ([`arc_swap`]): a lookup loads the
//! pointer, finds the number's partition (its number database: the first four digits) and probes
//! one open-addressing array keyed by the number's digits as an integer (one cache line, usually:
//! the number's owner, state, `used_by` and module sit next to the key, interned, so
//! [`InboundTable::info`] and [`InboundTable::is_on_net`] never follow the entry pointer). Writers
//! build the next snapshot and swap it in; a lookup never takes a lock and never waits for a
//! writer.
//!
//! A partition is a large `base` map and a small `delta` of recent changes (a removal is a `None`
//! in the delta) that a lookup checks first. A change copies only the delta of its partition; when
//! the delta outgrows [`delta_cap`] of its base, the partition is rebuilt into one map. A burst of
//! change rows (one read of a database) coalesces into one swap, and a database's first read is
//! swapped in at once, as one new partition.
//!
//! A deleted number database leaves the table; a database deleted and created again is read
//! again from the start, and its numbers replaced in one swap when that read is complete.
//!
//! Delivery is at least once: applying a change twice is harmless (last write wins per number,
//! and the feed delivers a document's changes in order).

mod index;
mod reflect;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use docstore::{DbName, SharedStore};
use e164::E164;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::account::AccountId;
use crate::auth::Accounts;
use crate::config::Config;
use crate::doc::{NumberDoc, NumberState, INUM_DB, MANAGED_DB};
use crate::error::Error;
use crate::lifecycle::{lookup_account, AccountLookup, Ctx};

use index::{is_routable, parse_doc, Batch, Key, Packed, Parsed, State};
use reflect::run;

/// The fields of a number document the table reads (besides `_id`, `_rev`, `_deleted`): every
/// field [`NumberDoc::from_json`] reads except the public fields and unknown private ones. The
/// public fields only matter for a 3.22 document whose `pvt_features` is still a list; the table
/// reads such a document whole (one extra `GET`).
pub const TABLE_FIELDS: &[&str] = &[
    "pvt_state",
    "pvt_number_state",
    "pvt_assigned_to",
    "pvt_previously_assigned_to",
    "pvt_used_by",
    "pvt_module_name",
    "pvt_features",
    "pvt_features_allowed",
    "pvt_features_denied",
    "pvt_reserve_history",
    "pvt_carrier_data",
    "pvt_ported_in",
    "pvt_region",
    "pvt_created",
    "pvt_modified",
];

/// What the table knows about one number.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundEntry {
    /// The owner (`pvt_assigned_to`).
    pub account: Option<AccountId>,
    /// `pvt_state`.
    pub state: NumberState,
    /// `pvt_used_by`.
    pub used_by: Option<String>,
    /// The names of the number's features (sorted).
    pub features: Vec<String>,
    /// `pvt_module_name`.
    pub module: String,
    /// The document as the table reads it, for `identify`'s routing properties: the private
    /// fields of [`TABLE_FIELDS`]; the public fields ([`NumberDoc::public`]) and unknown private
    /// fields ([`NumberDoc::extra`]) are not kept.
    pub doc: NumberDoc,
}

impl InboundEntry {
    /// The entry of a number document (its public and unknown private fields are dropped).
    pub fn from_doc(mut doc: NumberDoc) -> Self {
        doc.public = serde_json::Map::new();
        doc.extra = serde_json::Map::new();
        InboundEntry {
            account: doc.assigned_to.clone(),
            state: doc.state,
            used_by: doc.used_by.clone(),
            features: doc.features_list(),
            module: doc.module_name.clone(),
            doc,
        }
    }

    /// Whether calls to this number stay on the network (`knm_numbers:lookup_account/1` (the on-net check)): it has an owner and
    /// a routable state (`in_service`, `port_in`, `port_out`, `reserved`; `knm_number:lookup_account/1`).
    pub fn is_on_net(&self) -> bool {
        self.account.is_some() && is_routable(self.state)
    }
}

/// A number as [`InboundTable::info`] answers it: the routing fields of its entry, read from
/// the table's slot for the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberInfo<'t> {
    /// The owner (`pvt_assigned_to`).
    pub account: Option<&'t AccountId>,
    /// `pvt_state`.
    pub state: NumberState,
    /// `pvt_used_by`.
    pub used_by: Option<&'t str>,
    /// `pvt_module_name`.
    pub module: &'t str,
    /// [`InboundEntry::is_on_net`].
    pub on_net: bool,
}

/// A snapshot of the table's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundStatus {
    /// Numbers in the table.
    pub numbers: usize,
    /// Number databases followed.
    pub dbs: usize,
    /// Of those, the ones whose backlog has been read.
    pub dbs_caught_up: usize,
    /// Whether every database known at start (and since) has been read up to its live feed.
    pub caught_up: bool,
    /// Changes applied since start.
    pub changes_applied: u64,
    /// The followers' trouble (reconnecting, silent) and the number documents they could not
    /// decode.
    pub feeds: docstore::BoardReport,
}

/// How the table follows the store: the process's one [`docstore::FeedOptions`] (its fleet's
/// backoff, `poll_every` and `concurrency`; the table holds no live feed of its own, see
/// [`docstore::fleet`]).
pub type InboundOptions = docstore::FeedOptions;

/// The live inbound table. Cheap to clone; the background tasks stop when the last clone is
/// dropped.
#[derive(Clone)]
pub struct InboundTable {
    state: Arc<State>,
    _tasks: Arc<TaskGuard>,
}

struct TaskGuard(Option<JoinHandle<()>>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.abort();
        }
    }
}

fn is_routable_db(db: &DbName) -> bool {
    docstore::naming::is_numbers_db(db) && db.as_str() != MANAGED_DB && db.as_str() != INUM_DB
}

impl Default for InboundTable {
    fn default() -> Self {
        InboundTable::new()
    }
}

impl InboundTable {
    /// An empty, static table (filled with [`InboundTable::apply_doc`]; for tests and builds from
    /// documents already in hand).
    pub fn new() -> Self {
        let state = State::default();
        state.listed.store(true, Ordering::Release);
        InboundTable { state: Arc::new(state), _tasks: Arc::new(TaskGuard(None)) }
    }

    /// Builds the table from `store` and keeps it live (see the module docs). Returns at once;
    /// [`InboundTable::wait_caught_up`] waits for the first full read.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(store: SharedStore, opts: InboundOptions) -> Self {
        let state = Arc::new(State::default());
        let task = tokio::spawn(run(store, state.clone(), opts));
        InboundTable { state, _tasks: Arc::new(TaskGuard(Some(task))) }
    }

    /// The entry of `number`, if the table has one (a shared handle: one reference-count
    /// increment; [`InboundTable::with_entry`] reads without it).
    #[inline]
    pub fn lookup(&self, number: &E164) -> Option<Arc<InboundEntry>> {
        self.lookup_str(number.as_str())
    }

    /// The entry of a number given as text (already normalized).
    #[inline]
    pub fn lookup_str(&self, number: &str) -> Option<Arc<InboundEntry>> {
        let key = Key::with_part(number)?;
        self.state.snap.load().get(key).map(|p| p.entry.clone())
    }

    /// What the table knows of `number` without reading its entry: owner, state, `used_by`,
    /// module and the on-net flag, all from the number's slot (one memory access on a large
    /// table; [`InboundTable::lookup`] reads the entry too). The strings borrow from the table.
    #[inline]
    pub fn info(&self, number: &E164) -> Option<NumberInfo<'_>> {
        let key = Key::with_part(number.as_str())?;
        // The slot's fields are copied out and the snapshot released before the names (which
        // the table, not the snapshot, holds) are read.
        let (owner, state, used_by, module, on_net) = {
            let snap = self.state.snap.load();
            let p = snap.get(key)?;
            (p.owner, p.state, p.used_by, p.module, p.is_on_net())
        };
        let names = &self.state.names;
        Some(NumberInfo {
            account: names.owner(owner),
            state,
            used_by: names.string(used_by),
            module: names.string(module).unwrap_or_default(),
            on_net,
        })
    }

    /// Calls `f` with the entry of `number` (or `None`), borrowed from the current snapshot: no
    /// reference count is touched. Keep `f` short: the snapshot it reads stays alive until `f`
    /// returns.
    #[inline]
    pub fn with_entry<R>(&self, number: &E164, f: impl FnOnce(Option<&InboundEntry>) -> R) -> R {
        let snap = self.state.snap.load();
        f(Key::with_part(number.as_str()).and_then(|key| snap.get(key)).map(|p| &*p.entry))
    }

    /// Whether calls to `number` stay on the network ([`InboundEntry::is_on_net`]; `false` for a
    /// number the table does not have). Decided from the owner and state beside the key: the
    /// entry itself is not read.
    #[inline]
    pub fn is_on_net(&self, number: &E164) -> bool {
        Key::with_part(number.as_str())
            .is_some_and(|key| self.state.snap.load().get(key).is_some_and(Packed::is_on_net))
    }

    /// `knm_number:lookup_account/1` `lookup_account` from the table (port requests are not in the table: a number only
    /// in a port request is `not_found` here; the store layer's
    /// [`crate::store::NumberStore::lookup_account`] also reads port requests), decided with the
    /// caller's current `config` and `accounts` (the table keeps numbers only).
    ///
    /// # Errors
    /// `not_found`, `unassigned`, `not_in_service`, `account_disabled`.
    pub fn identify(
        &self,
        number: &E164,
        config: &Config,
        accounts: &dyn Accounts,
    ) -> Result<AccountLookup, Error> {
        let entry = self.lookup(number);
        let doc = entry.as_ref().map(|e| &e.doc);
        let cnam = entry.as_ref().is_none_or(|e| crate::carriers::should_lookup_cnam(&e.module));
        let ctx = Ctx::system(config, accounts, crate::store::now_gregorian());
        lookup_account(number, doc, None, cnam, &ctx)
    }

    /// Applies one stored document (a change row): number documents are (re)placed, deleted
    /// ones (`_deleted`) removed; design documents and unreadable documents are ignored. Visible
    /// to lookups when this returns.
    pub fn apply_doc(&self, doc: &Value) {
        self.apply_docs(std::slice::from_ref(doc));
    }

    /// [`InboundTable::apply_doc`] for many documents, in order, in one swap.
    pub fn apply_docs(&self, docs: &[Value]) {
        let mut batch = Batch::default();
        for doc in docs {
            match parse_doc(doc, false) {
                Parsed::Skip => continue,
                Parsed::Set(key, slot) => batch.changes.push((key, slot)),
                // Only a projected document asks for the whole one.
                Parsed::NeedsWholeDoc(_) => continue,
            }
            self.state.changes.fetch_add(1, Ordering::Relaxed);
        }
        self.state.publish(batch);
        self.state.notify.notify_waiters();
    }

    /// Removes a number.
    pub fn remove(&self, number: &str) {
        if let Some(key) = Key::of(number) {
            self.state.publish(Batch { changes: vec![(key, None)], replace: None });
            self.state.notify.notify_waiters();
        }
    }

    /// Numbers in the table.
    pub fn len(&self) -> usize {
        self.state.snap.load().len
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether every number database has been read up to its live feed (a table that is not
    /// caught up may answer `not_found` for numbers that exist).
    pub fn is_caught_up(&self) -> bool {
        self.state.caught_up()
    }

    /// Waits until [`InboundTable::is_caught_up`].
    pub async fn wait_caught_up(&self) {
        loop {
            let notified = self.state.notify.notified();
            if self.state.caught_up() {
                return;
            }
            notified.await;
        }
    }

    /// Waits until `pred` holds for the entry of `number` (or its absence); for consumers that
    /// must see their own write.
    pub async fn wait_for(
        &self,
        number: &E164,
        mut pred: impl FnMut(Option<&InboundEntry>) -> bool,
    ) {
        loop {
            let notified = self.state.notify.notified();
            if pred(self.lookup(number).as_deref()) {
                return;
            }
            notified.await;
        }
    }

    /// The table's health.
    pub fn status(&self) -> InboundStatus {
        let dbs_caught_up = self.state.dbs.iter().filter(|e| *e.value()).count();
        let dbs = self.state.fleet_dbs.load(Ordering::Relaxed).max(dbs_caught_up);
        InboundStatus {
            numbers: self.len(),
            dbs,
            dbs_caught_up,
            caught_up: self.state.caught_up(),
            changes_applied: self.state.changes.load(Ordering::Relaxed),
            feeds: self.state.board.report(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::index::*;
    use super::*;
    use crate::doc::number_db;

    #[test]
    fn keys_are_the_digits_and_their_count() {
        let k = Key::of("+14155550100").unwrap();
        assert_eq!((k.len(), k.value()), (11, 14_155_550_100));
        assert_ne!(Key::of("+01"), Key::of("+1"));
        assert_eq!(Key::of("+999999999999999").unwrap().len(), 15);
        for bad in ["", "+", "14155550100", "+1415x", "+1234567890123456", "+-1"] {
            assert_eq!(Key::of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn partitions_are_number_databases() {
        for number in ["+14155550100", "+1415", "+441234", "+0001"] {
            let db = number_db(number).unwrap();
            assert_eq!(Part::of_db(&db), Some(Key::of(number).unwrap().part()), "{number}");
        }
        assert_ne!(Key::of("+123").unwrap().part(), Key::of("+1230").unwrap().part());
        assert_ne!(Key::of("+12").unwrap().part(), Key::of("+012").unwrap().part());
        for number in ["+1", "+12", "+123", "+1234", "+012345", "+999999999999999"] {
            let (key, part) = Key::with_part(number).unwrap();
            assert_eq!(part, key.part(), "{number}");
        }
        assert_eq!(Part::of_db("numbers/managed"), None);
        assert_eq!(Part::of_db("numbers/+14"), None);
    }

    fn doc(number: &str, state: &str) -> Value {
        serde_json::json!({"_id": number, "pvt_state": state, "pvt_module_name": "knm_local",
            "pvt_assigned_to": "account0000000000000000000000002"})
    }

    #[test]
    fn deltas_fold_into_the_base_and_counts_hold() {
        let table = InboundTable::new();
        // Enough numbers in one partition to rebuild it several times.
        let docs: Vec<Value> =
            (0..5000).map(|i| doc(&format!("+1415{i:07}"), "in_service")).collect();
        for chunk in docs.chunks(700) {
            table.apply_docs(chunk);
        }
        assert_eq!(table.len(), 5000);
        for i in (0..5000).step_by(3) {
            table.remove(&format!("+1415{i:07}"));
        }
        table.remove("+14159999999");
        table.apply_doc(&serde_json::json!({"_id": "+14150000001", "_deleted": true}));
        table.apply_doc(&doc("+14150000001", "reserved"));
        table.apply_doc(&doc("+14150000002", "released"));
        let expected = (0..5000).filter(|i| i % 3 != 0).count();
        assert_eq!(table.len(), expected);
        let n = |s: &str| E164::new(s).unwrap();
        assert!(table.lookup(&n("+14150000000")).is_none());
        assert_eq!(table.lookup(&n("+14150000001")).unwrap().state, NumberState::Reserved);
        assert!(table.is_on_net(&n("+14150000001")));
        assert!(!table.is_on_net(&n("+14150000002")));
        assert!(!table.is_on_net(&n("+14150000003")), "removed");
        assert!(table.with_entry(&n("+14150000004"), |e| e.is_some()));
        // Forgetting a database (an empty batch replacing its partition, as when it is gone)
        // drops its partition only.
        table.apply_doc(&doc("+12125550100", "in_service"));
        let replace = Part::of_db("numbers/+1415");
        table.state.publish(Batch { changes: Vec::new(), replace });
        assert_eq!(table.len(), 1);
        assert!(table.lookup(&n("+12125550100")).is_some());
    }

    #[test]
    fn the_base_finds_every_key_and_no_other() {
        let (names, mut ids) = (Names::default(), NameIds::default());
        let mut entry = |state: &str| {
            let d = NumberDoc::from_json(&doc("+14155550100", state), 0).unwrap();
            names.pack(&mut ids, Arc::new(InboundEntry::from_doc(d)))
        };
        let (on, off) = (entry("in_service"), entry("released"));
        let keys: Vec<u64> =
            (0..3000u64).map(|i| Key::of(&format!("+1415{:07}", i * 7)).unwrap().0).collect();
        let map: FastMap<u64, Packed> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, if i % 2 == 0 { on.clone() } else { off.clone() }))
            .collect();
        let base = Base::build(map);
        assert_eq!((base.len, base.iter().count()), (3000, 3000));
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(base.get(*k).map(Packed::is_on_net), Some(i % 2 == 0));
        }
        for i in 0..3000u64 {
            let miss = Key::of(&format!("+1415{:07}", i * 7 + 1)).unwrap().0;
            assert!(base.get(miss).is_none() && !base.contains_key(miss));
        }
        assert!(Base::default().get(keys[0]).is_none());
        // One owner and one name, interned once however many numbers carry them.
        assert_eq!((names.owners.count(), names.strings.count()), (1, 1));
        assert_eq!(names.string(1), Some("knm_local"));
        assert_eq!(std::mem::size_of::<BaseSlot>(), 32);
    }

    /// `info` answers the entry's routing fields from the slot, through deltas, rebuilds and
    /// removals alike.
    #[test]
    fn info_is_the_entry_routing_fields() {
        let table = InboundTable::new();
        let n = |s: &str| E164::new(s).unwrap();
        let check = |number: &str| {
            let info = table.info(&n(number));
            let entry = table.lookup(&n(number));
            assert_eq!(info.is_some(), entry.is_some(), "{number}");
            if let (Some(info), Some(entry)) = (info, entry) {
                assert_eq!(info.account, entry.account.as_ref(), "{number}");
                assert_eq!(info.state, entry.state, "{number}");
                assert_eq!(info.used_by, entry.used_by.as_deref(), "{number}");
                assert_eq!(info.module, entry.module, "{number}");
                assert_eq!(info.on_net, entry.is_on_net(), "{number}");
                assert_eq!(info.on_net, table.is_on_net(&n(number)), "{number}");
            }
        };
        let numbered = |i: usize, state: &str, owner: Option<&str>, used_by: Option<&str>| {
            let mut d = doc(&format!("+1415{i:07}"), state);
            d["pvt_assigned_to"] = serde_json::json!(owner);
            d["pvt_used_by"] = serde_json::json!(used_by);
            d["pvt_module_name"] = serde_json::json!(["knm_local", "knm_other"][i % 2]);
            d
        };
        let owners = ["account0000000000000000000000002", "account0000000000000000000000003"];
        // A base (one big read), then a delta, then enough changes to rebuild it.
        let docs: Vec<Value> = (0..3000)
            .map(|i| numbered(i, "in_service", Some(owners[i % 2]), Some("callflow")))
            .collect();
        table.apply_docs(&docs);
        table.apply_doc(&numbered(1, "reserved", Some(owners[0]), None));
        table.apply_doc(&numbered(2, "available", None, None));
        table.apply_doc(&numbered(3, "port_in", Some(owners[1]), Some("trunkstore")));
        table.remove("+14150000004");
        for i in [0, 1, 2, 3, 4, 5, 2999, 3000] {
            check(&format!("+1415{i:07}"));
        }
        let info = table.info(&n("+14150000003")).unwrap();
        assert_eq!(info.account.map(AccountId::as_str), Some(owners[1]));
        assert_eq!(
            (info.state, info.used_by, info.module),
            (NumberState::PortIn, Some("trunkstore"), "knm_other")
        );
        assert!(info.on_net);
        let info = table.info(&n("+14150000002")).unwrap();
        assert_eq!((info.account, info.used_by, info.on_net), (None, None, false));
        assert!(table.info(&n("+14150000004")).is_none());
        let later: Vec<Value> =
            (0..3000).map(|i| numbered(i, "released", Some(owners[1]), Some("mobile"))).collect();
        table.apply_docs(&later[..2500]);
        for i in [0, 1, 2, 3, 4, 2499, 2500, 2999] {
            check(&format!("+1415{i:07}"));
        }
        assert_eq!(table.info(&n("+14150000000")).unwrap().used_by, Some("mobile"));
    }

    /// Many distinct names (more than the usual handful): `info` answers every one.
    #[test]
    fn many_distinct_names() {
        let table = InboundTable::new();
        let docs: Vec<Value> = (0..128)
            .map(|i| {
                let mut d = doc(&format!("+1415{i:07}"), "in_service");
                d["pvt_used_by"] = serde_json::json!(format!("app{i}"));
                d["pvt_module_name"] = serde_json::json!(format!("module{i}"));
                d
            })
            .collect();
        table.apply_docs(&docs);
        for i in 0..128 {
            let info = table.info(&E164::new(format!("+1415{i:07}")).unwrap()).unwrap();
            assert_eq!(info.used_by, Some(format!("app{i}").as_str()));
            assert_eq!(info.module, format!("module{i}"));
        }
        assert_eq!(table.state.names.strings.count(), 256, "each name interned once");
    }

    #[test]
    fn a_projected_322_document_is_read_whole() {
        let legacy = serde_json::json!({"_id": "+14155550100", "pvt_state": "in_service",
            "pvt_features": ["force_outbound"]});
        assert!(matches!(parse_doc(&legacy, true), Parsed::NeedsWholeDoc(_)));
        assert!(matches!(parse_doc(&legacy, false), Parsed::Set(_, Some(_))));
        let current = doc("+14155550100", "in_service");
        assert!(matches!(parse_doc(&current, true), Parsed::Set(_, Some(_))));
        let design = serde_json::json!({"_id": "_design/numbers"});
        assert!(matches!(parse_doc(&design, true), Parsed::Skip));
    }
}

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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use docstore::{Change, DbName, Fields, FleetEvent, FleetOptions, SharedStore};
use e164::E164;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::account::AccountId;
use crate::auth::Accounts;
use crate::config::Config;
use crate::doc::{NumberDoc, NumberState, INUM_DB, MANAGED_DB};
use crate::error::Error;
use crate::lifecycle::{lookup_account, AccountLookup, Ctx};

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

/// Changes per `_changes` page (the fleet's default is 1,000).
const CATCH_UP_PAGE: usize = 10_000;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

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

/// A number as a key: its digits as an integer, with the digit count above them (so `+01` and
/// `+1` differ). E.164 numbers have at most 15 digits, below 2^50.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key(u64);

impl Key {
    const LEN_SHIFT: u32 = 50;

    /// The key of `+digits`; `None` for anything else.
    fn of(number: &str) -> Option<Key> {
        Self::with_part(number).map(|(key, _)| key)
    }

    /// The key of `+digits` and its partition ([`Key::part`], read on the way: lookups need
    /// both and a division is slower than the parse).
    #[inline]
    fn with_part(number: &str) -> Option<(Key, Part)> {
        let digits = number.strip_prefix('+')?.as_bytes();
        if digits.is_empty() || digits.len() > E164::MAX_DIGITS {
            return None;
        }
        let mut value = 0u64;
        let mut prefix = 0u64;
        for (i, &b) in digits.iter().enumerate() {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u64::from(b - b'0');
            if i == 3 {
                prefix = value;
            }
        }
        let key = Key(((digits.len() as u64) << Self::LEN_SHIFT) | value);
        let part = if digits.len() >= 4 {
            Part(prefix as u16)
        } else {
            Part(10_000 + (digits.len() as u16) * 1000 + value as u16)
        };
        Some((key, part))
    }

    fn len(self) -> u32 {
        (self.0 >> Self::LEN_SHIFT) as u32
    }

    fn value(self) -> u64 {
        self.0 & ((1 << Self::LEN_SHIFT) - 1)
    }

    /// The partition: the number database (`numbers/+` and the first four digits, as
    /// [`crate::number_db`]); numbers of fewer than four digits get partitions of their own.
    fn part(self) -> Part {
        let (len, value) = (self.len(), self.value());
        if len >= 4 {
            Part((value / 10u64.pow(len - 4)) as u16)
        } else {
            Part(10_000 + (len as u16) * 1000 + value as u16)
        }
    }
}

/// A partition of the table: one number database's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Part(u16);

impl Part {
    /// The partition of number database `db` (`numbers/+1415`), if it is one.
    fn of_db(db: &str) -> Option<Part> {
        let prefix = db.strip_prefix("numbers/")?;
        if prefix.len() != 5 {
            return None;
        }
        let key = Key::of(prefix)?;
        (key.len() == 4).then(|| key.part())
    }
}

/// The delta of a partition whose base holds `base` numbers may hold this many changes before the
/// partition is rebuilt: `2·√base`, at least 1,024 (2,000 for a million numbers). A change copies
/// the delta and a rebuild the base, once per `delta_cap` changes: with this cap a single change
/// costs about as much in either, a few thousand entry copies at most.
fn delta_cap(base: usize) -> usize {
    (2 * base.isqrt()).max(1024)
}

type Slot = Option<Arc<InboundEntry>>;

/// A number's entry as the table keeps it: the entry, with its routing fields beside it
/// (owner, state, `used_by`, module; the strings interned in [`Names`]), so that
/// [`InboundTable::info`] and [`InboundTable::is_on_net`] answer from the slot alone and never
/// follow the entry pointer (a second random memory access on a table larger than the caches).
#[derive(Clone)]
struct Packed {
    entry: Arc<InboundEntry>,
    /// 0: no owner; else 1 + the owner's index in [`Names::owners`].
    owner: u32,
    /// 0: no `used_by`; else 1 + its index in [`Names::strings`].
    used_by: u32,
    /// 1 + the module name's index in [`Names::strings`].
    module: u32,
    state: NumberState,
}

impl Packed {
    /// [`InboundEntry::is_on_net`], from the packed fields.
    #[inline]
    fn is_on_net(&self) -> bool {
        self.owner != 0 && is_routable(self.state)
    }
}

/// The states a call to an owned number stays on the network in (`knm_number:lookup_account/1`).
#[inline]
fn is_routable(state: NumberState) -> bool {
    matches!(
        state,
        NumberState::InService | NumberState::PortIn | NumberState::PortOut | NumberState::Reserved
    )
}

/// The owners and names (`used_by`, module) of the table's numbers, interned: append-only, so an
/// index in a slot stays valid for the table's life and a lookup reads them without a lock. A
/// few hundred bytes per distinct account; the names are a handful.
#[derive(Default)]
struct Names {
    owners: boxcar::Vec<AccountId>,
    strings: boxcar::Vec<Box<str>>,
}

/// The writer's side of [`Names`]: value → index (kept under [`State::write`]).
#[derive(Default)]
struct NameIds {
    owners: FastMap<AccountId, u32>,
    strings: FastMap<Box<str>, u32>,
}

impl Names {
    /// `entry` with its fields interned (writers only: `ids` is [`State::write`]'s).
    fn pack(&self, ids: &mut NameIds, entry: Arc<InboundEntry>) -> Packed {
        let owner = entry.account.as_ref().map_or(0, |account| match ids.owners.get(account) {
            Some(&id) => id,
            None => {
                let id = self.owners.push(account.clone()) as u32 + 1;
                ids.owners.insert(account.clone(), id);
                id
            }
        });
        let mut string = |text: &str| match ids.strings.get(text) {
            Some(&id) => id,
            None => {
                let id = self.strings.push(text.into()) as u32 + 1;
                ids.strings.insert(text.into(), id);
                id
            }
        };
        let used_by = entry.used_by.as_deref().map_or(0, &mut string);
        let module = string(&entry.module);
        Packed { state: entry.state, owner, used_by, module, entry }
    }

    #[inline]
    fn owner(&self, id: u32) -> Option<&AccountId> {
        self.owners.get(id.checked_sub(1)? as usize)
    }

    #[inline]
    fn string(&self, id: u32) -> Option<&str> {
        self.strings.get(id.checked_sub(1)? as usize).map(|s| &**s)
    }
}

/// One slot of a [`Base`]: a key (0 when empty) and its number. 32 bytes, aligned to 32, so a
/// slot never straddles a cache line: a probe that finds its key at home reads one line.
#[derive(Clone, Default)]
#[repr(C, align(32))]
struct BaseSlot {
    key: u64,
    packed: Option<Packed>,
}

/// A partition's base: an immutable open-addressing map, built once. A power-of-two array of
/// slots, at most two thirds full, probed linearly from a multiplicative hash of the key, so a
/// lookup usually reads one cache line. The key and the number's routing fields sit side by
/// side: on a table much larger than the caches every line read is a memory access (~100–250 ns
/// on the development VM), and a separate entry array or entry read costs one more. No key is 0
/// (its digit count is at least 1), so 0 marks an empty slot.
struct Base {
    slots: Box<[BaseSlot]>,
    shift: u32,
    len: usize,
}

impl Base {
    fn build(entries: FastMap<u64, Packed>) -> Base {
        let capacity = (entries.len() * 3 / 2 + 1).next_power_of_two().max(16);
        let mut slots: Vec<BaseSlot> = vec![BaseSlot::default(); capacity];
        let shift = 64 - capacity.trailing_zeros();
        let mask = capacity - 1;
        let len = entries.len();
        for (key, packed) in entries {
            let mut i = Self::home(key, shift);
            while slots[i].key != 0 {
                i = (i + 1) & mask;
            }
            slots[i] = BaseSlot { key, packed: Some(packed) };
        }
        Base { slots: slots.into_boxed_slice(), shift, len }
    }

    #[inline]
    fn home(key: u64, shift: u32) -> usize {
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> shift) as usize
    }

    #[inline]
    fn get(&self, key: u64) -> Option<&Packed> {
        let mask = self.slots.len() - 1;
        let mut i = Self::home(key, self.shift);
        loop {
            let slot = &self.slots[i];
            match slot.key {
                0 => return None,
                k if k == key => return slot.packed.as_ref(),
                _ => i = (i + 1) & mask,
            }
        }
    }

    fn contains_key(&self, key: u64) -> bool {
        self.get(key).is_some()
    }

    fn iter(&self) -> impl Iterator<Item = (u64, &Packed)> {
        self.slots.iter().filter_map(|slot| Some((slot.key, slot.packed.as_ref()?)))
    }
}

impl Default for Base {
    fn default() -> Self {
        Base::build(FastMap::default())
    }
}

/// One partition: `base` plus the changes since (`delta`, checked first; `None` is a removal).
#[derive(Clone, Default)]
struct Partition {
    base: Arc<Base>,
    delta: Arc<FastMap<u64, Option<Packed>>>,
    len: usize,
}

impl Partition {
    #[inline]
    fn get(&self, key: Key) -> Option<&Packed> {
        if !self.delta.is_empty() {
            if let Some(slot) = self.delta.get(&key.0) {
                return slot.as_ref();
            }
        }
        self.base.get(key.0)
    }

    /// This partition with `changes` applied (in order: the last change of a key wins).
    fn with(&self, changes: Vec<(Key, Option<Packed>)>) -> Partition {
        if self.delta.len() + changes.len() > delta_cap(self.base.len) {
            let mut all: FastMap<u64, Packed> = FastMap::default();
            all.reserve(self.base.len + changes.len());
            all.extend(self.base.iter().map(|(k, p)| (k, p.clone())));
            let delta = self.delta.iter().map(|(k, slot)| (*k, slot.clone()));
            for (key, slot) in delta.chain(changes.into_iter().map(|(k, slot)| (k.0, slot))) {
                match slot {
                    Some(p) => all.insert(key, p),
                    None => all.remove(&key),
                };
            }
            return Partition::from_entries(all);
        }
        let mut len = self.len;
        let mut delta = (*self.delta).clone();
        for (key, slot) in changes {
            // `changes` may repeat a key: count against what the earlier ones left.
            let before = match delta.get(&key.0) {
                Some(s) => s.is_some(),
                None => self.base.contains_key(key.0),
            };
            let after = slot.is_some();
            len = len + usize::from(after) - usize::from(before);
            if slot.is_none() && !self.base.contains_key(key.0) {
                delta.remove(&key.0);
            } else {
                delta.insert(key.0, slot);
            }
        }
        Partition { base: self.base.clone(), delta: Arc::new(delta), len }
    }

    /// A partition of exactly these entries.
    fn from_entries(entries: FastMap<u64, Packed>) -> Partition {
        let len = entries.len();
        Partition { base: Arc::new(Base::build(entries)), delta: Arc::default(), len }
    }
}

/// What lookups read: every partition, immutable.
#[derive(Clone, Default)]
struct Snapshot {
    parts: FastMap<Part, Partition>,
    len: usize,
}

impl Snapshot {
    #[inline]
    fn get(&self, (key, part): (Key, Part)) -> Option<&Packed> {
        self.parts.get(&part)?.get(key)
    }
}

/// Changes waiting for one swap: per key, the entry or `None` (removed), in arrival order.
#[derive(Default)]
struct Batch {
    changes: Vec<(Key, Slot)>,
    /// Replace the partition of this database by the `Some` changes of its keys (a database read
    /// from the start); changes of other partitions are applied as usual.
    replace: Option<Part>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.replace.is_none()
    }
}

#[derive(Default)]
struct State {
    snap: ArcSwap<Snapshot>,
    /// Serializes writers (lookups never take it), and holds their side of `names`.
    write: Mutex<NameIds>,
    names: Names,
    /// Number databases read at least once (→ `true`).
    dbs: DashMap<String, bool>,
    /// Number databases known to the fleet (read or not).
    fleet_dbs: std::sync::atomic::AtomicUsize,
    /// Every number database known has been read and none is waiting to be read.
    listed: AtomicBool,
    changes: AtomicU64,
    /// The followers' health and undecodable rows.
    board: docstore::FeedBoard,
    notify: Notify,
}

impl State {
    fn caught_up(&self) -> bool {
        self.listed.load(Ordering::Acquire) && self.dbs.iter().all(|e| *e.value())
    }

    /// Applies `batch` in one swap.
    fn publish(&self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        let mut ids = self.write.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = self.snap.load_full();
        let mut next = Snapshot { parts: current.parts.clone(), len: current.len };
        let mut by_part: FastMap<Part, Vec<(Key, Option<Packed>)>> = FastMap::default();
        let mut replaced: FastMap<u64, Packed> = FastMap::default();
        for (key, slot) in batch.changes {
            let part = key.part();
            let packed = slot.map(|entry| self.names.pack(&mut ids, entry));
            if Some(part) == batch.replace {
                match packed {
                    Some(p) => replaced.insert(key.0, p),
                    None => replaced.remove(&key.0),
                };
            } else {
                by_part.entry(part).or_default().push((key, packed));
            }
        }
        if let Some(part) = batch.replace {
            if let Some(old) = next.parts.remove(&part) {
                next.len -= old.len;
            }
            if !replaced.is_empty() {
                let partition = Partition::from_entries(replaced);
                next.len += partition.len;
                next.parts.insert(part, partition);
            }
        }
        for (part, changes) in by_part {
            let old = next.parts.remove(&part).unwrap_or_default();
            next.len -= old.len;
            let partition = old.with(changes);
            next.len += partition.len;
            if partition.len > 0 || !partition.delta.is_empty() {
                next.parts.insert(part, partition);
            }
        }
        self.snap.store(Arc::new(next));
    }

    /// Drops the numbers of database `db`.
    fn forget_db(&self, db: &str) {
        if let Some(part) = Part::of_db(db) {
            self.publish(Batch { changes: Vec::new(), replace: Some(part) });
        }
    }
}

/// What one stored document means for the table.
enum Parsed {
    /// Not for the table (a design document, an id that is not a number).
    Skip,
    /// The number's entry: `None` removes it (deleted, or unreadable).
    Set(Key, Slot),
    /// A 3.22 document whose features are derived from its public fields: read it whole.
    NeedsWholeDoc(Key),
}

/// Reads one stored document (whole, or projected on [`TABLE_FIELDS`] when `projected`).
fn parse_doc(doc: &Value, projected: bool) -> Parsed {
    let Some(id) = doc.get("_id").and_then(Value::as_str) else { return Parsed::Skip };
    let Some(key) = Key::of(id) else { return Parsed::Skip };
    if doc.get("_deleted").and_then(Value::as_bool) == Some(true) {
        return Parsed::Set(key, None);
    }
    if projected
        && doc.get("pvt_features").is_some_and(|f| f.as_array().is_some_and(|l| !l.is_empty()))
    {
        return Parsed::NeedsWholeDoc(key);
    }
    match NumberDoc::from_json(doc, 0) {
        Ok(d) => Parsed::Set(key, Some(Arc::new(InboundEntry::from_doc(d)))),
        Err(e) => {
            tracing::warn!(id, error = %e, "inbound table: not a number document; skipped");
            Parsed::Set(key, None)
        }
    }
}

/// How the table follows the store (it holds no live feed of its own: see [`docstore::fleet`]).
#[derive(Debug, Clone)]
pub struct InboundOptions {
    /// The first retry of a failed read waits up to this long (default 100 ms).
    pub backoff_base: Duration,
    /// No retry waits longer than this (default 60 s).
    pub backoff_cap: Duration,
    /// How often databases are listed and compared when the store has no `_db_updates` feed
    /// (default 5 s).
    pub poll_dbs_every: Duration,
}

impl Default for InboundOptions {
    fn default() -> Self {
        let fleet = FleetOptions::new("inbound");
        InboundOptions {
            poll_dbs_every: fleet.poll_every,
            backoff_base: fleet.backoff_base,
            backoff_cap: fleet.backoff_cap,
        }
    }
}

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

/// Follows every number database with one [`docstore::fleet`] (no feed per database): a
/// database's first read (and a read after it was created anew) is swapped in at once as its
/// partition; later reads are applied as one batch each; a deleted database leaves the table.
async fn run(store: SharedStore, state: Arc<State>, opts: InboundOptions) {
    let mut options = FleetOptions::new("inbound");
    options.backoff_base = opts.backoff_base;
    options.backoff_cap = opts.backoff_cap;
    options.poll_every = opts.poll_dbs_every;
    options.board = Some(state.board.clone());
    options.page = CATCH_UP_PAGE;
    options.fields = Some(Fields::new(TABLE_FIELDS.iter().copied()));
    let mut fleet = docstore::fleet(store.clone(), is_routable_db, options);
    let mut status = fleet.status_watch();
    loop {
        tokio::select! {
            event = fleet.next() => match event {
                Some(FleetEvent::Loaded { db, changes, .. }) => {
                    let replace = Part::of_db(db.as_str());
                    let batch = read_changes(&store, &state, &db, changes, replace).await;
                    state.publish(batch);
                    state.dbs.insert(db.as_str().to_owned(), true);
                }
                Some(FleetEvent::Changed { db, changes, .. }) => {
                    let batch = read_changes(&store, &state, &db, changes, None).await;
                    state.publish(batch);
                }
                Some(FleetEvent::Gone { db }) => {
                    state.dbs.remove(db.as_str());
                    state.forget_db(db.as_str());
                }
                None => return,
            },
            changed = status.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        let now = status.borrow().clone();
        state.fleet_dbs.store(now.dbs, Ordering::Relaxed);
        // The status may run ahead of the events still queued: caught up once every database
        // the fleet read has been applied here too.
        let applied = state.dbs.len() >= now.dbs;
        state.listed.store(now.caught_up() && applied, Ordering::Release);
        state.notify.notify_waiters();
    }
}

/// One read of a database as one batch (`replace`: it replaces the database's partition).
async fn read_changes(
    store: &SharedStore,
    state: &State,
    db: &DbName,
    changes: Vec<Change>,
    replace: Option<Part>,
) -> Batch {
    let mut batch = Batch { changes: Vec::with_capacity(changes.len()), replace };
    for change in changes {
        if let Some(change) = read_change(store, db, change).await {
            batch.changes.push(change);
            state.changes.fetch_add(1, Ordering::Relaxed);
        }
    }
    batch
}

/// What a change row means for the table (`None`: nothing).
async fn read_change(store: &SharedStore, db: &DbName, c: Change) -> Option<(Key, Slot)> {
    if c.deleted {
        return Key::of(&c.id).map(|key| (key, None));
    }
    let doc = c.doc?;
    match parse_doc(&doc, true) {
        Parsed::Skip => None,
        Parsed::Set(key, slot) => Some((key, slot)),
        Parsed::NeedsWholeDoc(key) => match store.get(db, &c.id).await {
            Ok(Some(whole)) => match parse_doc(&whole, false) {
                Parsed::Set(key, slot) => Some((key, slot)),
                _ => None,
            },
            // Deleted since: its deletion row follows.
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(id = c.id, error = %e, "inbound table: cannot read a 3.22 number document; skipped");
                Some((key, None))
            }
        },
    }
}

#[cfg(test)]
mod tests {
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
        // Forgetting a database drops its partition only.
        table.apply_doc(&doc("+12125550100", "in_service"));
        table.state.forget_db("numbers/+1415");
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

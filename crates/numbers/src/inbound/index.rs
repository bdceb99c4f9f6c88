//! The table itself: numbers as integer keys, partitioned by number database, each partition
//! an open-addressing base and a small delta of recent changes; the owners and names interned
//! beside the keys; the snapshot writers build and swap in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use e164::E164;
use serde_json::Value;
use tokio::sync::Notify;

use super::InboundEntry;
use crate::account::AccountId;
use crate::doc::{NumberDoc, NumberState};

pub(super) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A number as a key: its digits as an integer, with the digit count above them (so `+01` and
/// `+1` differ). E.164 numbers have at most 15 digits, below 2^50.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Key(pub(super) u64);

impl Key {
    const LEN_SHIFT: u32 = 50;

    /// The key of `+digits`; `None` for anything else.
    pub(super) fn of(number: &str) -> Option<Key> {
        Self::with_part(number).map(|(key, _)| key)
    }

    /// The key of `+digits` and its partition ([`Key::part`], read on the way: lookups need
    /// both and a division is slower than the parse).
    #[inline]
    pub(super) fn with_part(number: &str) -> Option<(Key, Part)> {
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

    pub(super) fn len(self) -> u32 {
        (self.0 >> Self::LEN_SHIFT) as u32
    }

    pub(super) fn value(self) -> u64 {
        self.0 & ((1 << Self::LEN_SHIFT) - 1)
    }

    /// The partition: the number database (`numbers/+` and the first four digits, as
    /// [`crate::number_db`]); numbers of fewer than four digits get partitions of their own.
    pub(super) fn part(self) -> Part {
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
pub(super) struct Part(pub(super) u16);

impl Part {
    /// The partition of number database `db` (`numbers/+1415`), if it is one.
    pub(super) fn of_db(db: &str) -> Option<Part> {
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
pub(super) fn delta_cap(base: usize) -> usize {
    (2 * base.isqrt()).max(1024)
}

pub(super) type Slot = Option<Arc<InboundEntry>>;

/// A number's entry as the table keeps it: the entry, with its routing fields beside it
/// (owner, state, `used_by`, module; the strings interned in [`Names`]), so that
/// [`InboundTable::info`] and [`InboundTable::is_on_net`] answer from the slot alone and never
/// follow the entry pointer (a second random memory access on a table larger than the caches).
#[derive(Clone)]
pub(super) struct Packed {
    pub(super) entry: Arc<InboundEntry>,
    /// 0: no owner; else 1 + the owner's index in [`Names::owners`].
    pub(super) owner: u32,
    /// 0: no `used_by`; else 1 + its index in [`Names::strings`].
    pub(super) used_by: u32,
    /// 1 + the module name's index in [`Names::strings`].
    pub(super) module: u32,
    pub(super) state: NumberState,
}

impl Packed {
    /// [`InboundEntry::is_on_net`], from the packed fields.
    #[inline]
    pub(super) fn is_on_net(&self) -> bool {
        self.owner != 0 && is_routable(self.state)
    }
}

/// The states a call to an owned number stays on the network in (`knm_number:lookup_account/1`).
#[inline]
pub(super) fn is_routable(state: NumberState) -> bool {
    matches!(
        state,
        NumberState::InService | NumberState::PortIn | NumberState::PortOut | NumberState::Reserved
    )
}

/// The owners and names (`used_by`, module) of the table's numbers, interned: append-only, so an
/// index in a slot stays valid for the table's life and a lookup reads them without a lock. A
/// few hundred bytes per distinct account; the names are a handful.
#[derive(Default)]
pub(super) struct Names {
    pub(super) owners: boxcar::Vec<AccountId>,
    pub(super) strings: boxcar::Vec<Box<str>>,
}

/// The writer's side of [`Names`]: value → index (kept under [`State::write`]).
#[derive(Default)]
pub(super) struct NameIds {
    pub(super) owners: FastMap<AccountId, u32>,
    pub(super) strings: FastMap<Box<str>, u32>,
}

impl Names {
    /// `entry` with its fields interned (writers only: `ids` is [`State::write`]'s).
    pub(super) fn pack(&self, ids: &mut NameIds, entry: Arc<InboundEntry>) -> Packed {
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
    pub(super) fn owner(&self, id: u32) -> Option<&AccountId> {
        self.owners.get(id.checked_sub(1)? as usize)
    }

    #[inline]
    pub(super) fn string(&self, id: u32) -> Option<&str> {
        self.strings.get(id.checked_sub(1)? as usize).map(|s| &**s)
    }
}

/// One slot of a [`Base`]: a key (0 when empty) and its number. 32 bytes, aligned to 32, so a
/// slot never straddles a cache line: a probe that finds its key at home reads one line.
#[derive(Clone, Default)]
#[repr(C, align(32))]
pub(super) struct BaseSlot {
    pub(super) key: u64,
    pub(super) packed: Option<Packed>,
}

/// A partition's base: an immutable open-addressing map, built once. A power-of-two array of
/// slots, at most two thirds full, probed linearly from a multiplicative hash of the key, so a
/// lookup usually reads one cache line. The key and the number's routing fields sit side by
/// side: on a table much larger than the caches every line read is a memory access (~100–250 ns
/// on the development VM), and a separate entry array or entry read costs one more. No key is 0
/// (its digit count is at least 1), so 0 marks an empty slot.
pub(super) struct Base {
    pub(super) slots: Box<[BaseSlot]>,
    pub(super) shift: u32,
    pub(super) len: usize,
}

impl Base {
    pub(super) fn build(entries: FastMap<u64, Packed>) -> Base {
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
    pub(super) fn home(key: u64, shift: u32) -> usize {
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> shift) as usize
    }

    #[inline]
    pub(super) fn get(&self, key: u64) -> Option<&Packed> {
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

    pub(super) fn contains_key(&self, key: u64) -> bool {
        self.get(key).is_some()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, &Packed)> {
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
pub(super) struct Partition {
    pub(super) base: Arc<Base>,
    pub(super) delta: Arc<FastMap<u64, Option<Packed>>>,
    pub(super) len: usize,
}

impl Partition {
    #[inline]
    pub(super) fn get(&self, key: Key) -> Option<&Packed> {
        if !self.delta.is_empty() {
            if let Some(slot) = self.delta.get(&key.0) {
                return slot.as_ref();
            }
        }
        self.base.get(key.0)
    }

    /// This partition with `changes` applied (in order: the last change of a key wins).
    pub(super) fn with(&self, changes: Vec<(Key, Option<Packed>)>) -> Partition {
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
    pub(super) fn from_entries(entries: FastMap<u64, Packed>) -> Partition {
        let len = entries.len();
        Partition { base: Arc::new(Base::build(entries)), delta: Arc::default(), len }
    }
}

/// What lookups read: every partition, immutable.
#[derive(Clone, Default)]
pub(super) struct Snapshot {
    pub(super) parts: FastMap<Part, Partition>,
    pub(super) len: usize,
}

impl Snapshot {
    #[inline]
    pub(super) fn get(&self, (key, part): (Key, Part)) -> Option<&Packed> {
        self.parts.get(&part)?.get(key)
    }
}

/// Changes waiting for one swap: per key, the entry or `None` (removed), in arrival order.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) changes: Vec<(Key, Slot)>,
    /// Replace the partition of this database by the `Some` changes of its keys (a database read
    /// from the start); changes of other partitions are applied as usual.
    pub(super) replace: Option<Part>,
}

impl Batch {
    pub(super) fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.replace.is_none()
    }
}

#[derive(Default)]
pub(super) struct State {
    pub(super) snap: ArcSwap<Snapshot>,
    /// Serializes writers (lookups never take it), and holds their side of `names`.
    pub(super) write: Mutex<NameIds>,
    pub(super) names: Names,
    /// Number databases read at least once (→ `true`).
    pub(super) dbs: DashMap<String, bool>,
    /// Number databases known to the fleet (read or not).
    pub(super) fleet_dbs: std::sync::atomic::AtomicUsize,
    /// Every number database known has been read and none is waiting to be read.
    pub(super) listed: AtomicBool,
    pub(super) changes: AtomicU64,
    /// The followers' health and undecodable rows.
    pub(super) board: docstore::FeedBoard,
    pub(super) notify: Notify,
}

impl State {
    pub(super) fn caught_up(&self) -> bool {
        self.listed.load(Ordering::Acquire) && self.dbs.iter().all(|e| *e.value())
    }

    /// Applies `batch` in one swap.
    pub(super) fn publish(&self, batch: Batch) {
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
}

/// What one stored document means for the table.
pub(super) enum Parsed {
    /// Not for the table (a design document, an id that is not a number).
    Skip,
    /// The number's entry: `None` removes it (deleted, or unreadable).
    Set(Key, Slot),
    /// A 3.22 document whose features are derived from its public fields: read it whole.
    NeedsWholeDoc(Key),
}

/// Reads one stored document (whole, or projected on [`TABLE_FIELDS`] when `projected`).
pub(super) fn parse_doc(doc: &Value, projected: bool) -> Parsed {
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

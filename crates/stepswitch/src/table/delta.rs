//! What a table updated for added, removed or re-ruled documents ([`crate::rebuild`]) holds beside
//! the parts it shares with the table it was last compiled in full as: the resources appended
//! since (their slots, index entries, rule patterns and view-order keys) and a count of the
//! slots removed since (tombstones: their [`Hot`](super::Hot) entry says `dead`, and lookups
//! skip them).
//!
//! Slots never move. The full compile's slots are in view order by position; every slot has a
//! view-order key ([`Delta::order_key`]): `(slot + 1) << 64` for those, and for an appended slot
//! a key strictly between the keys of its neighbours in view order, so sorting a lookup's
//! candidates by key puts them back in view order (the order the weight sort's ties keep).

use std::sync::Arc;

use super::{PatternId, PrefixTrie, RulePattern};
use crate::simple::PrefixSet;

/// How far apart the view-order keys of the full compile's consecutive slots are: room for 64
/// halvings when documents keep being added between the same two neighbours (past that, the
/// rebuild is a full compile).
const KEY_SHIFT: u32 = 64;

/// The view-order key of a slot of the full compile.
pub(crate) fn base_key(slot: usize) -> u128 {
    (slot as u128 + 1) << KEY_SHIFT
}

/// The key after the last one when nothing follows it in view order (the same spacing as the
/// full compile's slots).
pub(crate) fn key_after(last: u128) -> u128 {
    last.saturating_add(1 << KEY_SHIFT)
}

/// A rule pattern of an appended resource, with the index keys it is filed under (`""`: always
/// evaluated).
#[derive(Debug)]
pub(crate) struct DeltaPattern {
    pub(crate) pattern: RulePattern,
    pub(crate) keys: PrefixSet,
}

/// The resources appended to a table since its full compile, and how many slots died since.
#[derive(Debug)]
pub(crate) struct Delta {
    /// Slots below this are the full compile's; appended slots follow.
    pub(crate) base_slots: u32,
    /// The appended resources' patterns: pattern id `base + i` is entry `i`, `base` being the
    /// number of the full compile's patterns.
    pub(crate) patterns: Vec<Arc<DeltaPattern>>,
    /// The view-order key of appended slot `base_slots + i`.
    pub(crate) order: Vec<u128>,
    /// The index of the live appended resources' rules (consulted after the shared one).
    pub(crate) index: PrefixTrie,
    /// How many slots (of the full compile's or appended ones) are tombstones.
    pub(crate) dead: u32,
}

impl Delta {
    /// The view-order key of `slot`.
    #[inline]
    pub(crate) fn order_key(&self, slot: usize) -> u128 {
        match slot.checked_sub(self.base_slots as usize) {
            Some(appended) => self.order[appended],
            None => base_key(slot),
        }
    }

    /// Appended slots plus tombstones: what [`crate::rebuild`] compares with its compaction
    /// threshold.
    pub(crate) fn weight(&self) -> usize {
        self.order.len() + self.dead as usize
    }

    /// The pattern with id `id`, one of the appended ones (`base` is the number of the full
    /// compile's patterns).
    pub(crate) fn pattern(&self, base: usize, id: PatternId) -> &RulePattern {
        &self.patterns[id as usize - base].pattern
    }
}

//! The prefix index of a [`RouteTable`](super::RouteTable): each rule's anchored literal
//! prefixes → the (resource, rule) pairs that have them, probed once per distinct prefix length.

use std::collections::HashMap;

use super::PatternId;

/// An index entry: `(resource << 32 | rule position, pattern id)`.
pub(crate) type Hit = (u64, PatternId);

/// Anchored literal rule prefixes → rules: a hash map keyed by the literal, plus the set
/// of literal lengths present, so a lookup probes one key per distinct length (typically a
/// handful) instead of walking or scanning. Compact: one entry per distinct prefix.
///
/// Entries are `resource << 32 | rule position` (position in the resource's `rules`, i.e.
/// evaluation order), so sorting the hits orders them by resource, then by rule; the rule's
/// pattern id rides along so a lookup need not read the resource's rule list.
#[derive(Debug, Default)]
pub(crate) struct PrefixTrie {
    by_prefix: HashMap<Key, Vec<Hit>, crate::hash::FastBuild>,
    /// Distinct prefix lengths, ascending, each with a filter on its keys' first two bytes.
    lengths: Vec<Length>,
}

/// One distinct key length of a [`PrefixTrie`].
#[derive(Debug)]
struct Length {
    len: usize,
    /// For keys of two bytes or more: bit `b0 << 8 | b1` is set when a key of this length
    /// starts with `b0 b1`. A lookup skips the probe (a hash-table cache miss or two at 10k+
    /// resources) when its number's first two bytes are not set; the few bitmap lines that
    /// numbers share (`+1`, `+4`...) stay in cache.
    first2: Option<Box<[u64; 1024]>>,
}

/// Index keys longer than this are cut to their first `KEY_LEN` bytes: the index stays a
/// superset filter (every hit still goes through the rule's matcher), and keys need no
/// allocation of their own.
const KEY_LEN: usize = 24;

/// A literal prefix of at most [`KEY_LEN`] bytes, stored inline. Hashes and compares as the
/// byte slice it holds, so the index is probed with plain `&[u8]`s.
#[derive(Clone, Copy)]
struct Key {
    len: u8,
    bytes: [u8; KEY_LEN],
}

impl Key {
    /// `prefix` must be at most [`KEY_LEN`] bytes.
    fn new(prefix: &[u8]) -> Key {
        let mut bytes = [0; KEY_LEN];
        bytes[..prefix.len()].copy_from_slice(prefix);
        Key { len: prefix.len() as u8, bytes }
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    fn len(&self) -> usize {
        usize::from(self.len)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl std::borrow::Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Key").field(&self.as_slice()).finish()
    }
}

impl PrefixTrie {
    /// An empty index with room for `keys` distinct prefixes.
    pub(crate) fn with_capacity(keys: usize) -> PrefixTrie {
        PrefixTrie {
            by_prefix: HashMap::with_capacity_and_hasher(keys, Default::default()),
            lengths: Vec::new(),
        }
    }

    pub(crate) fn insert(&mut self, prefix: &[u8], resource: u32, rule: u32, pattern: PatternId) {
        let entry = ((u64::from(resource) << 32) | u64::from(rule), pattern);
        let prefix = &prefix[..prefix.len().min(KEY_LEN)];
        match self.by_prefix.get_mut(prefix) {
            Some(list) => {
                if list.last() != Some(&entry) {
                    list.push(entry);
                }
            }
            None => {
                self.by_prefix.insert(Key::new(prefix), vec![entry]);
            }
        }
    }

    pub(crate) fn finish(&mut self) {
        let mut lengths: Vec<usize> = Vec::new();
        for (prefix, list) in &mut self.by_prefix {
            list.sort_unstable();
            list.dedup();
            list.shrink_to_fit();
            lengths.push(prefix.len());
        }
        lengths.sort_unstable();
        lengths.dedup();
        self.lengths = lengths
            .into_iter()
            .map(|len| Length { len, first2: (len >= 2).then(|| Box::new([0; 1024])) })
            .collect();
        for prefix in self.by_prefix.keys().map(std::borrow::Borrow::<[u8]>::borrow) {
            let length = self.lengths.iter_mut().find(|it| it.len == prefix.len());
            if let Some(first2) = length.and_then(|it| it.first2.as_mut()) {
                let bit = first2_bit(prefix);
                first2[bit >> 6] |= 1 << (bit & 63);
            }
        }
    }

    pub(super) fn collect(&self, text: &[u8], out: &mut Vec<Hit>) {
        for length in &self.lengths {
            let len = length.len;
            if len > text.len() {
                break;
            }
            if let Some(first2) = &length.first2 {
                let bit = first2_bit(text);
                if first2[bit >> 6] & (1 << (bit & 63)) == 0 {
                    continue;
                }
            }
            if let Some(list) = self.by_prefix.get(&text[..len]) {
                out.extend_from_slice(list);
            }
        }
    }
}

/// The [`Length::first2`] bit of a text of two bytes or more.
fn first2_bit(text: &[u8]) -> usize {
    (usize::from(text[0]) << 8) | usize::from(text[1])
}

//! The literal prefixes every match of a simple pattern starts with: the keys the route table's
//! prefix index files a rule under.

use super::{contains, Node, Prog, MAX_PREFIXES, MAX_PREFIX_LEN};

/// Literal prefixes in one allocation: each is a length byte followed by its bytes. A prefix
/// longer than 255 bytes is cut (a cut prefix is still one every match starts with).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PrefixSet(Box<[u8]>);

impl PrefixSet {
    /// The set of `items`, in their order.
    pub(crate) fn from_slices<'a, I>(items: I) -> PrefixSet
    where
        I: IntoIterator<Item = &'a [u8]>,
        I::IntoIter: Clone,
    {
        let items = items.into_iter();
        let size = items.clone().map(|it| 1 + it.len().min(255)).sum();
        let mut buf = Vec::with_capacity(size);
        for item in items {
            let item = &item[..item.len().min(255)];
            buf.push(item.len() as u8);
            buf.extend_from_slice(item);
        }
        PrefixSet(buf.into_boxed_slice())
    }

    /// Whether the set has no prefix at all (`{""}` is not empty).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of prefixes.
    pub(crate) fn len(&self) -> usize {
        self.iter().count()
    }

    /// The prefixes, in order.
    pub(crate) fn iter(&self) -> PrefixIter<'_> {
        PrefixIter(&self.0)
    }
}

/// The prefixes of a [`PrefixSet`].
pub(crate) struct PrefixIter<'a>(&'a [u8]);

impl<'a> Iterator for PrefixIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (&len, rest) = self.0.split_first()?;
        let (item, rest) = rest.split_at(usize::from(len));
        self.0 = rest;
        Some(item)
    }
}

/// One literal prefix, stored inline (prefix sets are built and crossed without a heap
/// allocation per member). Bytes past `len` are always zero.
#[derive(Clone, Copy)]
pub(super) struct Lit {
    len: u8,
    bytes: [u8; MAX_PREFIX_LEN],
}

impl Lit {
    const EMPTY: Lit = Lit { len: 0, bytes: [0; MAX_PREFIX_LEN] };

    fn of(byte: u8) -> Lit {
        let mut lit = Lit::EMPTY;
        lit.push(byte);
        lit
    }

    fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len()]
    }

    /// Appends a byte; the caller has checked the length limit.
    fn push(&mut self, byte: u8) {
        self.bytes[self.len()] = byte;
        self.len += 1;
    }

    /// Appends `other`; the caller has checked the length limit.
    fn extend(&mut self, other: &Lit) {
        let start = self.len();
        self.bytes[start..start + other.len()].copy_from_slice(other.as_slice());
        self.len += other.len;
    }
}

impl PartialEq for Lit {
    fn eq(&self, other: &Lit) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Lit {}

impl PartialOrd for Lit {
    fn partial_cmp(&self, other: &Lit) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Lit {
    /// Byte order of the literals (what sorting `Vec<u8>`s gives).
    fn cmp(&self, other: &Lit) -> std::cmp::Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

/// A set holding one literal (built with `push`: `vec![..]` of an all-zero value would be a
/// `calloc`).
fn one(lit: Lit) -> Vec<Lit> {
    let mut set = Vec::with_capacity(4);
    set.push(lit);
    set
}

/// The set holding only the empty literal.
fn empty_set() -> Vec<Lit> {
    one(Lit::EMPTY)
}

/// [`seq_prefixes`] while the set stays a single literal (the usual `^\+1415(\d{7})$`
/// shapes), without building sets: appends to `lit` and returns the `exact` flag, or `None`
/// when a node would branch the set (then the caller runs the general algorithm, whose
/// result this equals whenever it answers).
fn single_prefix(prog: &Prog, nodes: &[Node], lit: &mut Lit) -> Option<bool> {
    for node in nodes {
        let byte = match node {
            Node::Lit(byte) => *byte,
            Node::Class(set) => match single_member(set) {
                Some(only) => only,
                None => return Some(false),
            },
            Node::Group { first, count: 1, .. } => {
                let mut inner = Lit::EMPTY;
                let exact = single_prefix(prog, prog.seq(prog.alts[*first as usize]), &mut inner)?;
                if lit.len() + inner.len() > MAX_PREFIX_LEN {
                    return Some(false);
                }
                lit.extend(&inner);
                if !exact {
                    return Some(false);
                }
                continue;
            }
            Node::Repeat { node, .. } => match &prog.nodes[*node as usize] {
                // A repeated class that is not a single byte stops the prefix, whatever the
                // count (`\d{4}`).
                Node::Class(set) if single_member(set).is_none() => return Some(false),
                _ => return None,
            },
            Node::Group { .. } => return None,
        };
        if lit.len() + 1 > MAX_PREFIX_LEN {
            return Some(false);
        }
        lit.push(byte);
    }
    Some(true)
}

/// The only member of a byte set that has exactly one, ASCII, member.
fn single_member(set: &[u64; 4]) -> Option<u8> {
    let mut members = (0u8..=127).filter(|b| contains(set, *b));
    match (members.next(), members.next(), set[2..].iter().all(|it| *it == 0)) {
        (Some(only), None, true) => Some(only),
        _ => None,
    }
}

/// Prefix literals of a node sequence; the flag says whether the sequence was fully literal
/// (every string in the set is a complete match of the sequence).
pub(super) fn seq_prefixes(prog: &Prog, nodes: &[Node]) -> (Vec<Lit>, bool) {
    let mut lit = Lit::EMPTY;
    if let Some(exact) = single_prefix(prog, nodes, &mut lit) {
        return (one(lit), exact);
    }
    let mut set: Vec<Lit> = empty_set();
    // Appending one byte to every member keeps them distinct but may change their order
    // (`1` < `12`, `13` > `123`): sort again before the set is used or returned.
    let mut unsorted = false;
    let finish = |mut set: Vec<Lit>, unsorted: bool| {
        if unsorted {
            set.sort();
        }
        set
    };
    for node in nodes {
        // Fast path for the common literal runs (`+1415...`): append in place instead of
        // building one-byte sets and crossing them (same result as `cross` with one member).
        if let Node::Lit(byte) = node {
            if set.iter().any(|it| it.len() + 1 > MAX_PREFIX_LEN) {
                return (finish(set, unsorted), false);
            }
            for member in &mut set {
                member.push(*byte);
            }
            unsorted |= set.len() > 1;
            continue;
        }
        if unsorted {
            set.sort();
            unsorted = false;
        }
        let (part, exact) = node_prefixes(prog, node);
        let Some(part) = part else { return (set, false) };
        let crossed = cross(&set, &part);
        let Some(crossed) = crossed else { return (set, false) };
        set = crossed;
        if !exact {
            return (set, false);
        }
    }
    (finish(set, unsorted), true)
}

/// `None`: the node starts with something that is not a finite literal set.
fn node_prefixes(prog: &Prog, node: &Node) -> (Option<Vec<Lit>>, bool) {
    match node {
        Node::Lit(byte) => (Some(one(Lit::of(*byte))), true),
        // A class ends the prefix (expanding `\d` into ten keys buys little selectivity and
        // costs ten times the index entries), unless it has a single member.
        Node::Class(set) => match single_member(set) {
            Some(only) => (Some(one(Lit::of(only))), true),
            None => (None, false),
        },
        Node::Group { first, count, .. } => {
            let mut union: Vec<Lit> = Vec::new();
            let mut exact = true;
            for &alt in prog.group(*first, *count) {
                let (set, alt_exact) = seq_prefixes(prog, prog.seq(alt));
                exact &= alt_exact;
                union.extend(set);
            }
            union.sort();
            union.dedup();
            if union.len() > MAX_PREFIXES {
                return (None, false);
            }
            (Some(union), exact)
        }
        Node::Repeat { node, min, max, .. } => {
            let (inner, inner_exact) = node_prefixes(prog, &prog.nodes[*node as usize]);
            let Some(inner) = inner else { return (None, false) };
            match (min, max) {
                // Optional: "nothing" or one copy; exact only when one copy is all it can be.
                (0, Some(1)) => {
                    let mut set = empty_set();
                    set.extend(inner);
                    (Some(set), inner_exact)
                }
                (0, _) => (Some(empty_set()), false),
                (min, max) => {
                    let mut set = empty_set();
                    for _ in 0..*min {
                        match cross(&set, &inner) {
                            Some(next) => set = next,
                            None => return (Some(set), false),
                        }
                    }
                    (Some(set), inner_exact && *max == Some(*min))
                }
            }
        }
    }
}

/// Every `a ++ b`; `None` when the result would exceed the limits.
fn cross(left: &[Lit], right: &[Lit]) -> Option<Vec<Lit>> {
    if left.len() * right.len() > MAX_PREFIXES {
        return None;
    }
    let mut out = Vec::with_capacity(left.len() * right.len());
    for a in left {
        for b in right {
            if a.len() + b.len() > MAX_PREFIX_LEN {
                return None;
            }
            let mut joined = *a;
            joined.extend(b);
            out.push(joined);
        }
    }
    out.sort();
    out.dedup();
    Some(out)
}

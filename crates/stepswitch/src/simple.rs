//! A small, exact matcher for the rule shapes carriers actually write (`^\+1(415\d{7})$`,
//! `^(\+?1)?([2-9]\d{9})$`, ...), so that compiling 10k resources does not build 40k regex
//! automata and a lookup does not need one.
//!
//! The accepted subset is one both PCRE and the `regex` crate read the same way: literals,
//! `\d`, `.`, simple bracket classes, groups (capturing or `(?:`), alternation inside groups,
//! greedy or lazy `? * + {n} {n,} {n,m}` on single-level atoms, `^` first and `$` last.
//! Anything else (or any non-ASCII input) goes to the regex engines. Matching is PCRE's
//! leftmost, priority-ordered backtracking over bytes, so captures are exactly Kazoo's.

use e164::{BudgetExceeded, CaptureList};

/// Node visits one match may make. A carrier rule needs a few dozen on a phone number; a rule
/// that runs out (`^\d*\d*\d*\d*x`, `^(1|11)+$` on a long text) is handed to the linear-time
/// regex engine instead (see `RulePattern`).
pub(crate) const STEP_BUDGET: u32 = 10_000;
/// Texts longer than this are left to the regex engines: the matcher recurses per consumed
/// byte, and no dialled number or caller id is this long.
pub(crate) const MAX_TEXT: usize = 128;
/// Patterns with more nodes than this are left to the regex engines (recursion depth again).
const MAX_NODES: usize = 256;
/// Prefix sets larger than this are cut (a shorter prefix is still a valid index key).
const MAX_PREFIXES: usize = 64;
/// Prefixes longer than this are cut.
const MAX_PREFIX_LEN: usize = 24;
/// Bounded repetitions larger than this are left to the regex engines.
const MAX_REPEAT: u32 = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Lit(u8),
    /// A byte set (256 bits).
    Class([u64; 4]),
    /// The alternatives `alts[first..first + count]` of the pattern's [`Prog`].
    Group {
        first: u32,
        count: u32,
        capture: Option<usize>,
    },
    /// Repeats `nodes[node]` of the pattern's [`Prog`].
    Repeat {
        node: u32,
        min: u32,
        max: Option<u32>,
        greedy: bool,
    },
}

/// A parsed pattern's nodes in two flat tables (two allocations per pattern, however deeply
/// it nests): every sequence is a contiguous run of `nodes`, and `alts` lists each group
/// alternative's run; the last entry of `alts` is the top-level sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Prog {
    nodes: Box<[Node]>,
    alts: Box<[(u32, u32)]>,
}

impl Prog {
    /// The nodes of the run `(start, len)`.
    fn seq(&self, (start, len): (u32, u32)) -> &[Node] {
        &self.nodes[start as usize..(start + len) as usize]
    }

    /// The top-level sequence.
    fn top(&self) -> &[Node] {
        self.seq(self.alts[self.alts.len() - 1])
    }

    /// The alternatives of a group.
    fn group(&self, first: u32, count: u32) -> &[(u32, u32)] {
        &self.alts[first as usize..(first + count) as usize]
    }
}

/// A parsed rule in the simple subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SimplePattern {
    anchored_start: bool,
    anchored_end: bool,
    prog: Prog,
    n_groups: usize,
    /// Shortest and longest possible match, in bytes (`None`: unbounded).
    min_len: usize,
    max_len: Option<usize>,
    /// The byte every match starts with, when the pattern begins with a literal.
    first_byte: Option<u8>,
}

impl SimplePattern {
    /// Parses `source` if it is in the subset; `None` means "use the regex engines".
    pub(crate) fn parse(source: &str) -> Option<SimplePattern> {
        let bytes = source.as_bytes();
        if !source.is_ascii() {
            return None;
        }
        // The parser's tables are per-thread scratch space, reused from one rule to the next;
        // the pattern gets exact-size copies.
        SCRATCH.with(|cell| {
            let mut parser = Parser { bytes, pos: 0, n_groups: 0, scratch: cell.take() };
            parser.scratch.clear();
            let parsed = SimplePattern::parse_with(&mut parser)
                .filter(|it| it.prog.nodes.len() <= MAX_NODES);
            cell.set(parser.scratch);
            parsed
        })
    }

    fn parse_with(parser: &mut Parser<'_>) -> Option<SimplePattern> {
        let anchored_start = parser.eat(b'^');
        let (alt_base, anchored_end) = parser.alternatives(0)?;
        let scratch = &mut parser.scratch;
        if parser.pos != parser.bytes.len() || scratch.pending_alts.len() - alt_base != 1 {
            // Top-level alternation (`^a|b`) changes what `^` anchors: leave it to regex.
            return None;
        }
        // The top-level sequence goes last in `alts`.
        let top = scratch.pending_alts.pop()?;
        scratch.alts.push(top);
        let prog =
            Prog { nodes: Box::from(&scratch.nodes[..]), alts: Box::from(&scratch.alts[..]) };
        let (min_len, max_len) = seq_len(&prog, prog.top());
        let first_byte = match prog.top().first() {
            Some(Node::Lit(byte)) => Some(*byte),
            _ => None,
        };
        Some(SimplePattern {
            anchored_start,
            anchored_end,
            prog,
            n_groups: parser.n_groups,
            min_len,
            max_len,
            first_byte,
        })
    }

    /// Literal prefixes every match starts with at offset 0 (ascending), or `None` when the
    /// pattern is not anchored at the start. An empty string in the set means "no constraint".
    pub(crate) fn prefix_keys(&self) -> Option<PrefixSet> {
        if !self.anchored_start {
            return None;
        }
        let (set, _) = seq_prefixes(&self.prog, self.prog.top());
        Some(PrefixSet::from_slices(set.iter().map(Lit::as_slice)))
    }

    /// [`SimplePattern::prefix_keys`] as plain vectors.
    #[cfg(test)]
    pub(crate) fn prefixes(&self) -> Option<Vec<Vec<u8>>> {
        self.prefix_keys().map(|set| set.iter().map(|it| it.to_vec()).collect())
    }

    /// [`SimplePattern::try_captures`] with running out of steps as no match.
    #[cfg(test)]
    pub(crate) fn captures(&self, text: &str) -> Option<CaptureList> {
        self.try_captures(text).ok().flatten()
    }

    /// The first match in Erlang capture-list shape (trailing unset groups dropped); only for
    /// ASCII text of at most [`MAX_TEXT`] bytes (the caller sends anything else to the regex
    /// engines). `Err` when the match took more than [`STEP_BUDGET`] steps.
    pub(crate) fn try_captures(&self, text: &str) -> Result<Option<CaptureList>, BudgetExceeded> {
        let bytes = text.as_bytes();
        // Cheap rejections before any backtracking: length bounds and the first literal.
        if bytes.len() < self.min_len {
            return Ok(None);
        }
        if self.anchored_start
            && self.anchored_end
            && self.max_len.is_some_and(|max| bytes.len() > max)
        {
            return Ok(None);
        }
        let last_start = if self.anchored_start { 0 } else { bytes.len() - self.min_len };
        // `...$` with a bounded length can only match starting within `max_len` of the end.
        let first_start = match (self.anchored_start, self.anchored_end, self.max_len) {
            (false, true, Some(max)) => bytes.len().saturating_sub(max),
            _ => 0,
        };
        // Allocated on the first start worth trying (most calls reject before that).
        let mut caps = Caps { slots: Vec::new(), steps: STEP_BUDGET };
        for start in first_start..=last_start {
            if self.first_byte.is_some_and(|first| bytes.get(start) != Some(&first)) {
                continue;
            }
            if caps.steps == 0 {
                return Err(BudgetExceeded);
            }
            caps.slots.clear();
            caps.slots.resize(self.n_groups + 1, None);
            let anchored_end = self.anchored_end;
            let mut end_pos = None;
            let mut accept = |pos: usize, _: &mut Caps| {
                let ok = !anchored_end || pos == bytes.len();
                if ok {
                    end_pos = Some(pos);
                }
                ok
            };
            if match_seq(&self.prog, self.prog.top(), bytes, start, &mut caps, &mut accept) {
                caps[0] = end_pos.map(|end| (start, end));
                let mut list: CaptureList =
                    caps.slots.into_iter().map(|it| it.map(|(s, e)| s..e)).collect();
                while list.len() > 1 && list.last().is_some_and(Option::is_none) {
                    list.pop();
                }
                return Ok(Some(list));
            }
        }
        if caps.steps == 0 {
            return Err(BudgetExceeded);
        }
        Ok(None)
    }
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
    n_groups: usize,
    scratch: Scratch,
}

/// The tables a [`Parser`] builds.
#[derive(Default)]
struct Scratch {
    /// The pattern's node table: finished sequences and repeated atoms.
    nodes: Vec<Node>,
    /// The pattern's alternative table: finished groups' alternatives, group by group.
    alts: Vec<(u32, u32)>,
    /// Nodes of the sequences still being parsed (outer ones below inner ones).
    pending: Vec<Node>,
    /// Finished alternatives of the groups still being parsed.
    pending_alts: Vec<(u32, u32)>,
}

impl Scratch {
    fn clear(&mut self) {
        self.nodes.clear();
        self.alts.clear();
        self.pending.clear();
        self.pending_alts.clear();
    }
}

thread_local! {
    /// [`SimplePattern::parse`]'s reusable tables.
    static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::new(Scratch::default());
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Alternatives up to `)` (depth > 0) or the end; at depth 0 a final `$` is consumed and
    /// reported. The alternatives are `pending_alts[base..]`, `base` being what is returned.
    fn alternatives(&mut self, depth: usize) -> Option<(usize, bool)> {
        let base = self.scratch.pending_alts.len();
        let seq = self.scratch.pending.len();
        loop {
            match self.peek() {
                None => {
                    self.finish_seq(seq);
                    return (depth == 0).then_some((base, false));
                }
                Some(b')') => {
                    self.finish_seq(seq);
                    return (depth > 0).then_some((base, false));
                }
                Some(b'$') => {
                    self.pos += 1;
                    self.finish_seq(seq);
                    // `$` only as the very last byte of the pattern.
                    return (depth == 0 && self.pos == self.bytes.len()).then_some((base, true));
                }
                Some(b'|') => {
                    self.pos += 1;
                    self.finish_seq(seq);
                }
                Some(_) => {
                    let atom = self.atom(depth)?;
                    let node = self.quantifier(atom)?;
                    self.scratch.pending.push(node);
                }
            }
        }
    }

    /// Moves the sequence `pending[start..]` into the node table as one alternative.
    fn finish_seq(&mut self, start: usize) {
        let scratch = &mut self.scratch;
        let first = scratch.nodes.len() as u32;
        let len = (scratch.pending.len() - start) as u32;
        scratch.nodes.extend(scratch.pending.drain(start..));
        scratch.pending_alts.push((first, len));
    }

    fn atom(&mut self, depth: usize) -> Option<Node> {
        let byte = self.peek()?;
        self.pos += 1;
        match byte {
            b'(' => {
                let capture = if self.eat(b'?') {
                    if !self.eat(b':') {
                        return None;
                    }
                    None
                } else {
                    self.n_groups += 1;
                    Some(self.n_groups)
                };
                let (base, _) = self.alternatives(depth + 1)?;
                if !self.eat(b')') {
                    return None;
                }
                let scratch = &mut self.scratch;
                let first = scratch.alts.len() as u32;
                let count = (scratch.pending_alts.len() - base) as u32;
                scratch.alts.extend(scratch.pending_alts.drain(base..));
                Some(Node::Group { first, count, capture })
            }
            b'[' => self.class(),
            b'.' => {
                let mut set = [u64::MAX; 4];
                set[0] &= !(1u64 << b'\n');
                Some(Node::Class(set))
            }
            b'\\' => {
                let escaped = self.peek()?;
                self.pos += 1;
                match escaped {
                    b'd' => Some(Node::Class(range_set(b'0', b'9'))),
                    b'+' | b'*' | b'.' | b'?' | b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'|'
                    | b'^' | b'$' | b'\\' | b'/' | b'-' | b'#' => Some(Node::Lit(escaped)),
                    _ => None,
                }
            }
            b if b.is_ascii_alphanumeric() => Some(Node::Lit(b)),
            b'#' | b'-' | b'_' | b'@' | b':' | b'=' | b'%' | b'/' | b',' | b'~' | b'!' | b'&'
            | b'\'' | b'"' | b' ' => Some(Node::Lit(byte)),
            _ => None,
        }
    }

    fn class(&mut self) -> Option<Node> {
        let negated = self.eat(b'^');
        let mut set = [0u64; 4];
        let mut first = true;
        loop {
            let byte = self.peek()?;
            self.pos += 1;
            match byte {
                b']' if !first => break,
                b']' | b'[' => return None,
                b'\\' => {
                    let escaped = self.peek()?;
                    self.pos += 1;
                    match escaped {
                        b'd' => union(&mut set, &range_set(b'0', b'9')),
                        b'+' | b'*' | b'.' | b'-' | b']' | b'[' | b'\\' | b'#' | b'^' => {
                            add(&mut set, escaped)
                        }
                        _ => return None,
                    }
                }
                lo if lo.is_ascii_alphanumeric()
                    && self.peek() == Some(b'-')
                    && self
                        .bytes
                        .get(self.pos + 1)
                        .is_some_and(|it| it.is_ascii_alphanumeric()) =>
                {
                    let hi = self.bytes[self.pos + 1];
                    if hi < lo {
                        return None;
                    }
                    self.pos += 2;
                    union(&mut set, &range_set(lo, hi));
                }
                b if b.is_ascii_alphanumeric()
                    || matches!(b, b'+' | b'*' | b'#' | b'.' | b'_' | b'@') =>
                {
                    add(&mut set, b)
                }
                _ => return None,
            }
            first = false;
        }
        if negated {
            for word in &mut set {
                *word = !*word;
            }
        }
        Some(Node::Class(set))
    }

    fn number(&mut self) -> Option<u32> {
        let start = self.pos;
        while self.peek().is_some_and(|it| it.is_ascii_digit()) {
            self.pos += 1;
        }
        std::str::from_utf8(&self.bytes[start..self.pos]).ok()?.parse().ok()
    }

    fn quantifier(&mut self, atom: Node) -> Option<Node> {
        let (min, max) = match self.peek() {
            Some(b'?') => (0, Some(1)),
            Some(b'*') => (0, None),
            Some(b'+') => (1, None),
            Some(b'{') => {
                self.pos += 1;
                let min = self.number()?;
                let max = if self.eat(b',') {
                    if self.peek() == Some(b'}') {
                        None
                    } else {
                        Some(self.number()?)
                    }
                } else {
                    Some(min)
                };
                if !self.eat(b'}')
                    || max.is_some_and(|max| max < min)
                    || min > MAX_REPEAT
                    || max.is_some_and(|max| max > MAX_REPEAT)
                {
                    return None;
                }
                self.pos -= 1;
                (min, max)
            }
            _ => return Some(atom),
        };
        self.pos += 1;
        let greedy = !self.eat(b'?');
        if matches!(self.peek(), Some(b'+' | b'*' | b'?' | b'{')) {
            // Possessive or stacked quantifiers: not in the subset.
            return None;
        }
        // Repeating a repetition more than once could backtrack badly, and a repeated group
        // that can match nothing has engine-specific captures; leave both to the regex engines.
        let empty_alt = matches!(&atom, Node::Group { first, count, .. }
            if self.scratch.alts[*first as usize..(first + count) as usize]
                .iter()
                .any(|alt| alt.1 == 0));
        if (self.contains_repeat(&atom) && max != Some(1)) || empty_alt {
            return None;
        }
        let node = self.scratch.nodes.len() as u32;
        self.scratch.nodes.push(atom);
        Some(Node::Repeat { node, min, max, greedy })
    }

    fn contains_repeat(&self, node: &Node) -> bool {
        match node {
            Node::Repeat { .. } => true,
            Node::Group { first, count, .. } => {
                let Scratch { nodes, alts, .. } = &self.scratch;
                alts[*first as usize..(first + count) as usize].iter().any(|&(start, len)| {
                    nodes[start as usize..(start + len) as usize]
                        .iter()
                        .any(|it| self.contains_repeat(it))
                })
            }
            _ => false,
        }
    }
}

fn range_set(lo: u8, hi: u8) -> [u64; 4] {
    let mut set = [0u64; 4];
    for byte in lo..=hi {
        add(&mut set, byte);
    }
    set
}

fn add(set: &mut [u64; 4], byte: u8) {
    set[(byte / 64) as usize] |= 1u64 << (byte % 64);
}

fn union(set: &mut [u64; 4], other: &[u64; 4]) {
    for (word, more) in set.iter_mut().zip(other) {
        *word |= more;
    }
}

fn contains(set: &[u64; 4], byte: u8) -> bool {
    set[(byte / 64) as usize] & (1u64 << (byte % 64)) != 0
}

/// The capture slots of one match attempt and the steps it has left.
struct Caps {
    slots: Vec<Option<(usize, usize)>>,
    steps: u32,
}

impl std::ops::Index<usize> for Caps {
    type Output = Option<(usize, usize)>;

    fn index(&self, idx: usize) -> &Self::Output {
        &self.slots[idx]
    }
}

impl std::ops::IndexMut<usize> for Caps {
    fn index_mut(&mut self, idx: usize) -> &mut Self::Output {
        &mut self.slots[idx]
    }
}

/// Matches `nodes` at `pos`, then asks `accept` about the end position (continuation style,
/// so backtracking explores exactly PCRE's priority order).
fn match_seq(
    prog: &Prog,
    nodes: &[Node],
    text: &[u8],
    pos: usize,
    caps: &mut Caps,
    accept: &mut dyn FnMut(usize, &mut Caps) -> bool,
) -> bool {
    // Out of steps: every alternative still open fails at once, so the match unwinds.
    if caps.steps == 0 {
        return false;
    }
    caps.steps -= 1;
    let Some((first, rest)) = nodes.split_first() else {
        return accept(pos, caps);
    };
    match first {
        Node::Lit(byte) => {
            text.get(pos) == Some(byte) && match_seq(prog, rest, text, pos + 1, caps, accept)
        }
        Node::Class(set) => match text.get(pos) {
            Some(byte) if contains(set, *byte) => {
                match_seq(prog, rest, text, pos + 1, caps, accept)
            }
            _ => false,
        },
        Node::Group { first, count, capture } => {
            let capture = *capture;
            for &alt in prog.group(*first, *count) {
                let saved = capture.map(|idx| caps[idx]);
                let mut then = |end: usize, caps: &mut Caps| {
                    if let Some(idx) = capture {
                        caps[idx] = Some((pos, end));
                    }
                    if match_seq(prog, rest, text, end, caps, accept) {
                        return true;
                    }
                    if let (Some(idx), Some(saved)) = (capture, saved) {
                        caps[idx] = saved;
                    }
                    false
                };
                if match_seq(prog, prog.seq(alt), text, pos, caps, &mut then) {
                    return true;
                }
                if let (Some(idx), Some(saved)) = (capture, saved) {
                    caps[idx] = saved;
                }
            }
            false
        }
        Node::Repeat { node, min, max, greedy } => {
            let node = &prog.nodes[*node as usize];
            match_repeat(prog, node, *min, *max, *greedy, 0, rest, text, pos, caps, accept)
        }
    }
}

/// Repetition with PCRE priority: greedy tries one more first, lazy tries stopping first.
#[allow(clippy::too_many_arguments)]
fn match_repeat(
    prog: &Prog,
    node: &Node,
    min: u32,
    max: Option<u32>,
    greedy: bool,
    count: u32,
    rest: &[Node],
    text: &[u8],
    pos: usize,
    caps: &mut Caps,
    accept: &mut dyn FnMut(usize, &mut Caps) -> bool,
) -> bool {
    let can_stop = count >= min;
    let can_more = max.is_none_or(|max| count < max);
    let try_more = |caps: &mut Caps, accept: &mut dyn FnMut(usize, &mut Caps) -> bool| -> bool {
        if !can_more {
            return false;
        }
        let mut then = |end: usize, caps: &mut Caps| {
            // An iteration that consumed nothing cannot make progress.
            if end == pos && count >= min {
                return false;
            }
            match_repeat(prog, node, min, max, greedy, count + 1, rest, text, end, caps, accept)
        };
        match_seq(prog, std::slice::from_ref(node), text, pos, caps, &mut then)
    };
    // The order of the two attempts is the whole difference between greedy and lazy.
    if greedy {
        if try_more(caps, accept) {
            return true;
        }
        return can_stop && match_seq(prog, rest, text, pos, caps, accept);
    }
    if can_stop && match_seq(prog, rest, text, pos, caps, accept) {
        return true;
    }
    try_more(caps, accept)
}

/// Shortest and longest match of a node sequence.
fn seq_len(prog: &Prog, nodes: &[Node]) -> (usize, Option<usize>) {
    nodes
        .iter()
        .map(|node| node_len(prog, node))
        .fold((0, Some(0)), |(min, max), (node_min, node_max)| {
            (min + node_min, max.zip(node_max).map(|(a, b)| a + b))
        })
}

fn node_len(prog: &Prog, node: &Node) -> (usize, Option<usize>) {
    match node {
        Node::Lit(_) | Node::Class(_) => (1, Some(1)),
        Node::Group { first, count, .. } => {
            let mut min: Option<usize> = None;
            let mut max = Some(0usize);
            for &alt in prog.group(*first, *count) {
                let (alt_min, alt_max) = seq_len(prog, prog.seq(alt));
                min = Some(min.map_or(alt_min, |it| it.min(alt_min)));
                max = max.zip(alt_max).map(|(acc, it)| acc.max(it));
            }
            (min.unwrap_or(0), max)
        }
        Node::Repeat { node, min, max, .. } => {
            let (inner_min, inner_max) = node_len(prog, &prog.nodes[*node as usize]);
            let max = match (max, inner_max) {
                (Some(count), Some(len)) => Some(*count as usize * len),
                (_, Some(0)) => Some(0),
                _ => None,
            };
            (*min as usize * inner_min, max)
        }
    }
}

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
struct Lit {
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

    fn as_slice(&self) -> &[u8] {
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
fn seq_prefixes(prog: &Prog, nodes: &[Node]) -> (Vec<Lit>, bool) {
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

#[cfg(test)]
mod tests {
    use e164::Pattern;

    use super::*;

    fn prefixes(source: &str) -> Option<Vec<String>> {
        let pattern = SimplePattern::parse(source).expect("in subset");
        pattern
            .prefixes()
            .map(|set| set.into_iter().map(|it| String::from_utf8(it).unwrap()).collect())
    }

    #[test]
    fn subset_and_prefixes() {
        assert_eq!(prefixes(r"^\+1(415\d{7})$"), Some(vec!["+1415".into()]));
        assert_eq!(
            prefixes(r"^(?:\+?1)?(415)"),
            Some(vec!["+1415".into(), "1415".into(), "415".into()])
        );
        assert_eq!(prefixes(r"5550100$"), None);
        for outside in [r"^\+1(?!900)\d", r"^(\d+)+$", r"^a|b", r"(?i)^a", r"^\w", r"^a++"] {
            assert!(SimplePattern::parse(outside).is_none(), "{outside}");
        }
    }

    #[test]
    fn captures_equal_the_regex_engine() {
        // Differential check against the regex crate on a grid of patterns and inputs.
        let patterns = [
            r"^\+1(\d{10})$",
            r"^(\+?1)?([2-9][0-9]{2}[2-9][0-9]{6})$",
            r"^\+1",
            r"^011(\d{5,})$|^00(\d{5,})$",
            r"^(?:\+?1)?(415\d{7})$",
            r"^\+(44(?:20|11)\d{4,5})$",
            r"(\d{3})(\d*)$",
            r"^(\d+?)(\d{4})$",
            r"^\+1(8(?:00|88|77))(\d{7})$",
            r"^(a)?()b",
            r"^[^5]\d*",
            r"^\+?1?(\d{10})$",
            r"^(91[01])$",
            r"^.(.)",
            r"^\+44(\d{9,10})$",
            r"^(1|12)(2?)3$",
            r"^(\d{2}|\d{3})(\d{2})$",
            r"^(\d*?)(\d{2,}?)$",
            r"^([0-4]+)([5-9ab]*)",
            r"(\+)?(1)?(\d{3})?$",
            r"^(?:(\d)(\d))?(\d+)$",
            r"a(b?)",
        ];
        let inputs = [
            "+14155550100",
            "14155550100",
            "4155550100",
            "011442071234567",
            "0044207123",
            "+442071234",
            "+4411123456",
            "+18005550100",
            "b",
            "ab",
            "911",
            "910",
            "5551234",
            "123",
            "1223",
            "12223",
            "+1",
            "",
            "1234",
            "12345",
        ];
        for source in patterns {
            let simple = SimplePattern::parse(source);
            let Some(simple) = simple else {
                // Top-level alternation is deliberately outside the subset.
                assert!(source.contains("$|^"), "{source} should be in the subset");
                continue;
            };
            let reference = Pattern::new(source).unwrap();
            for input in inputs {
                assert_eq!(
                    simple.captures(input),
                    reference.captures(input),
                    "{source} on {input:?}"
                );
            }
            // Plus pseudo-random strings over the alphabet these rules care about.
            let alphabet = b"+0123456789ab";
            let mut state = 0x2545_F491_4F6C_DD1Du64;
            for _ in 0..3000 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let len = (state % 15) as usize;
                let input: String = (0..len)
                    .map(|k| {
                        alphabet[((state >> (k * 4)) % alphabet.len() as u64) as usize] as char
                    })
                    .collect();
                assert_eq!(
                    simple.captures(&input),
                    reference.captures(&input),
                    "{source} on {input:?}"
                );
            }
        }
    }
}

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

mod prefix;

pub(crate) use prefix::PrefixSet;
use prefix::{seq_prefixes, Lit};

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

#[cfg(test)]
mod tests;

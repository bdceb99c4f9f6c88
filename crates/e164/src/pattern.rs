//! Kazoo-compatible regular expressions: PCRE rules compiled with `regex`, or `fancy-regex` when needed.
//!
//! Kazoo evaluates every routing rule, classifier and converter with Erlang's `re` (PCRE) on a
//! binary without the `unicode` option, so `\d`, `\w` and `\s` are ASCII-only.
//! [`Pattern`] keeps that meaning: the shorthand classes are rewritten to explicit ASCII classes
//! before compiling, the fast `regex` engine is tried first, and `fancy-regex` (lookaround,
//! backreferences, atomic groups) is the fallback for rules the first engine rejects.
//!
//! Every pattern comes from a document a tenant may have written, so both compiling and
//! matching are bounded. Before any parser (ours or an engine's, several of them recursive)
//! sees a pattern, [`check_bounds`] refuses one longer than [`MAX_PATTERN_BYTES`] or nested
//! deeper than [`MAX_PATTERN_NESTING`]; a fallback pattern whose shape is catastrophic for a
//! backtracking matcher (an unbounded repetition inside another one) is refused as
//! [`Error::Catastrophic`]; and every fallback match runs with a budget of
//! [`BACKTRACK_LIMIT`] backtracking steps ([`Pattern::try_captures`] reports running out).

use std::fmt;
use std::ops::Range;

use crate::Error;

/// The longest pattern accepted, in bytes (carrier rules are a few dozen).
pub const MAX_PATTERN_BYTES: usize = 4096;

/// The deepest nesting accepted: groups, bracket classes and stacked repetitions (`a{2}{3}`)
/// each count one level. Carrier rules nest two or three levels.
pub const MAX_PATTERN_NESTING: usize = 100;

/// Backtracking steps one match of the fallback engine may take before it gives up. A rule
/// that only the fallback engine can run needs a few hundred on a phone number; the limit keeps
/// one match well under a millisecond.
pub const BACKTRACK_LIMIT: usize = 2_000;

/// The largest compiled program either engine may build for one pattern, in bytes. Carrier
/// rules need a few kilobytes; the limit makes a pattern like `(\d{1000}){1000}` fail fast
/// (the engines' own default is ten times larger, and slow to reach).
pub const COMPILED_SIZE_LIMIT: usize = 1 << 20;

/// A match of the fallback engine ran out of its [`BACKTRACK_LIMIT`] steps: the answer is
/// unknown (PCRE reports its match-limit error the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetExceeded;

impl fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exceeded its budget of {BACKTRACK_LIMIT} backtracking steps")
    }
}

/// Checks that `source` is short and shallow enough for any parser to read safely: at most
/// [`MAX_PATTERN_BYTES`] long and [`MAX_PATTERN_NESTING`] levels deep.
///
/// A single iterative pass, run before anything recursive sees the pattern.
///
/// # Errors
///
/// [`Error::Regex`] saying which bound the pattern exceeds.
pub fn check_bounds(source: &str) -> Result<(), Error> {
    let refuse = |message: String| Error::Regex { pattern: clip(source), message };
    if source.len() > MAX_PATTERN_BYTES {
        return Err(refuse(format!(
            "the pattern is {} bytes long; at most {MAX_PATTERN_BYTES} are accepted",
            source.len()
        )));
    }
    let depth = nesting(source);
    if depth > MAX_PATTERN_NESTING {
        return Err(refuse(format!(
            "the pattern nests {depth} levels deep; at most {MAX_PATTERN_NESTING} are accepted"
        )));
    }
    Ok(())
}

/// The deepest nesting of `source`: open groups plus open bracket classes plus the longest run
/// of stacked quantifiers at that point (an over-estimate is harmless: it only refuses).
fn nesting(source: &str) -> usize {
    let bytes = source.as_bytes();
    let (mut groups, mut classes, mut stacked, mut deepest) = (0usize, 0usize, 0usize, 0usize);
    let mut idx = 0;
    let mut after_quantifier = false;
    while idx < bytes.len() {
        let byte = bytes[idx];
        idx += 1;
        let quantifier = classes == 0 && matches!(byte, b'*' | b'+' | b'?' | b'{');
        match byte {
            b'\\' => idx += 1,
            b'[' if classes == 0 => {
                classes = 1;
                // A `]` right after `[` or `[^` is a literal.
                if bytes.get(idx) == Some(&b'^') {
                    idx += 1;
                }
                if bytes.get(idx) == Some(&b']') {
                    idx += 1;
                }
            }
            b'[' => classes += 1,
            b']' if classes > 0 => classes -= 1,
            b'(' if classes == 0 => groups += 1,
            b')' if classes == 0 => groups = groups.saturating_sub(1),
            b'{' if classes == 0 => {
                // A counted repetition `{n}`, `{n,}`, `{n,m}` is skipped whole; any other `{`
                // is a literal, and what follows it is still scanned.
                let count = bytes[idx..].iter().take_while(|b| b.is_ascii_digit() || **b == b',');
                let end = idx + count.count();
                if end > idx && bytes.get(end) == Some(&b'}') {
                    idx = end + 1;
                }
            }
            _ => {}
        }
        stacked = match (quantifier, after_quantifier) {
            (true, true) => stacked + 1,
            (true, false) => 1,
            (false, _) => 0,
        };
        after_quantifier = quantifier;
        deepest = deepest.max(groups + classes + stacked);
    }
    deepest
}

/// At most the first 200 bytes of a refused pattern, for its error message.
fn clip(source: &str) -> String {
    if source.len() <= 200 {
        return source.to_owned();
    }
    let mut end = 200;
    while !source.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &source[..end])
}

/// Which engine a [`Pattern`] was compiled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// The linear-time `regex` crate (every rule that it accepts).
    Regex,
    /// `fancy-regex`, for PCRE features the `regex` crate lacks (lookaround, backreferences).
    Fancy,
}

#[derive(Clone)]
enum Compiled {
    Regex(regex::Regex),
    Fancy(fancy_regex::Regex),
}

/// One compiled PCRE-flavoured regex, matched the way Erlang's `re:run/2` matches it.
///
/// Matching is unanchored (the pattern's own `^`/`$` anchor it), as in Kazoo.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    translated: String,
    compiled: Compiled,
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pattern")
            .field("source", &self.source)
            .field("engine", &self.engine())
            .finish()
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

/// The capture list of one match, in Erlang `re:run/2` shape.
///
/// Element 0 is the whole match; elements `1..` are the groups up to the highest-numbered group
/// that participated (PCRE omits trailing unset groups); a non-trailing unset group is `None`.
pub type CaptureList = Vec<Option<Range<usize>>>;

impl Pattern {
    /// Compiles a Kazoo (PCRE) regex.
    ///
    /// # Errors
    ///
    /// [`Error::Regex`] when the pattern is out of bounds ([`check_bounds`]) or neither
    /// engine accepts it (the message is then the fallback engine's, since it understands the
    /// larger PCRE subset); [`Error::Catastrophic`] when only the fallback engine accepts it
    /// and its shape can backtrack without end.
    pub fn new(source: &str) -> Result<Pattern, Error> {
        check_bounds(source)?;
        let translated = ascii_classes(source);
        let compiled = match regex::RegexBuilder::new(&translated)
            .size_limit(COMPILED_SIZE_LIMIT)
            .build()
        {
            Ok(re) => Compiled::Regex(re),
            Err(_) => match fancy(&translated) {
                Ok(re) => {
                    if let Some(reason) = catastrophic(&translated) {
                        return Err(Error::Catastrophic { pattern: clip(source), reason });
                    }
                    Compiled::Fancy(re)
                }
                Err(err) => return Err(Error::Regex { pattern: source.to_owned(), message: err }),
            },
        };
        Ok(Pattern { source: source.to_owned(), translated, compiled })
    }

    /// The pattern exactly as written in the document.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The pattern handed to the engine (ASCII shorthand classes spelled out).
    pub fn translated(&self) -> &str {
        &self.translated
    }

    /// The engine that compiled this pattern.
    pub fn engine(&self) -> Engine {
        match self.compiled {
            Compiled::Regex(_) => Engine::Regex,
            Compiled::Fancy(_) => Engine::Fancy,
        }
    }

    /// Whether the pattern matches anywhere in `text`.
    ///
    /// A `fancy-regex` match that exceeds its backtracking limit counts as no match (PCRE would
    /// likewise give up with a match-limit error, which Kazoo treats as `nomatch`).
    pub fn is_match(&self, text: &str) -> bool {
        self.try_is_match(text).unwrap_or(false)
    }

    /// [`Pattern::is_match`], telling a match that ran out of its [`BACKTRACK_LIMIT`] apart.
    ///
    /// # Errors
    ///
    /// [`BudgetExceeded`] (only the fallback engine backtracks).
    pub fn try_is_match(&self, text: &str) -> Result<bool, BudgetExceeded> {
        match &self.compiled {
            Compiled::Regex(re) => Ok(re.is_match(text)),
            Compiled::Fancy(re) => re.is_match(text).map_err(|_| BudgetExceeded),
        }
    }

    /// The first match's capture list in Erlang shape (see [`CaptureList`]), or `None` (also
    /// when the match ran out of its backtracking budget).
    pub fn captures(&self, text: &str) -> Option<CaptureList> {
        self.try_captures(text).ok().flatten()
    }

    /// [`Pattern::captures`], telling a match that ran out of its [`BACKTRACK_LIMIT`] apart.
    ///
    /// # Errors
    ///
    /// [`BudgetExceeded`] (only the fallback engine backtracks).
    pub fn try_captures(&self, text: &str) -> Result<Option<CaptureList>, BudgetExceeded> {
        let mut list: CaptureList = match &self.compiled {
            Compiled::Regex(re) => {
                let Some(caps) = re.captures(text) else { return Ok(None) };
                (0..caps.len()).map(|idx| caps.get(idx).map(|m| m.range())).collect()
            }
            Compiled::Fancy(re) => {
                let Some(caps) = re.captures(text).map_err(|_| BudgetExceeded)? else {
                    return Ok(None);
                };
                (0..caps.len()).map(|idx| caps.get(idx).map(|m| m.range())).collect()
            }
        };
        while list.len() > 1 && list.last().is_some_and(Option::is_none) {
            list.pop();
        }
        Ok(Some(list))
    }
}

/// The fallback engine for `translated`, with its backtracking budget.
/// `Err` is the engine's message.
fn fancy(translated: &str) -> Result<fancy_regex::Regex, String> {
    fancy_regex::RegexBuilder::new(translated)
        .backtrack_limit(BACKTRACK_LIMIT)
        .delegate_size_limit(COMPILED_SIZE_LIMIT)
        .build()
        .map_err(|err| err.to_string())
}

/// Why a pattern only the fallback (backtracking) engine runs is catastrophic, if it is: an
/// unbounded repetition inside another unbounded repetition (`((\d+)+)+`, `(\d*\d*)*`) can
/// try exponentially many ways to split the text before it fails. Such a rule would spend its
/// whole budget on every lookup that reaches it, so it is refused up front.
///
/// `translated` is within [`check_bounds`], so walking its tree recursively is safe.
fn catastrophic(translated: &str) -> Option<String> {
    let tree = fancy_regex::Expr::parse_tree(translated).ok()?;
    /// Whether `expr` contains an unbounded repetition; sets `found` when one is nested in
    /// another.
    fn walk(expr: &fancy_regex::Expr, inside_unbounded: bool, found: &mut bool) -> bool {
        use fancy_regex::Expr;
        match expr {
            Expr::Repeat { child, hi, .. } => {
                let unbounded = *hi == usize::MAX;
                if unbounded && inside_unbounded {
                    *found = true;
                }
                walk(child, inside_unbounded || unbounded, found) || unbounded
            }
            Expr::Concat(items) | Expr::Alt(items) => {
                let mut any = false;
                for item in items {
                    any |= walk(item, inside_unbounded, found);
                }
                any
            }
            Expr::Group(child) | Expr::LookAround(child, _) | Expr::AtomicGroup(child) => {
                walk(child, inside_unbounded, found)
            }
            Expr::Conditional { condition, true_branch, false_branch } => {
                let a = walk(condition, inside_unbounded, found);
                let b = walk(true_branch, inside_unbounded, found);
                let c = walk(false_branch, inside_unbounded, found);
                a || b || c
            }
            _ => false,
        }
    }
    let mut found = false;
    walk(&tree.expr, false, &mut found);
    found.then(|| {
        "an unbounded repetition nested in another one, in a rule that needs the backtracking \
         engine (lookaround or backreference): it can backtrack without end"
            .to_owned()
    })
}

/// The pattern as the engines read it: PCRE's ASCII shorthand classes spelled out and the
/// class syntax PCRE reads literally (`[` inside a class, a leading `]`) escaped. Whoever
/// parses a rule with `regex-syntax` must parse this, not the source, to read it as PCRE does.
pub fn translate(source: &str) -> String {
    ascii_classes(source)
}

/// Rewrites PCRE's ASCII shorthand classes (`\d \D \w \W \s \S`) to explicit ASCII classes.
///
/// Both Rust engines give the shorthands Unicode meaning; Kazoo's PCRE (byte mode) does not.
/// Every other escape is passed through untouched.
fn ascii_classes(pattern: &str) -> String {
    const DIGIT: &str = "0-9";
    const WORD: &str = "0-9A-Za-z_";
    const SPACE: &str = "\\t\\n\\x0B\\x0C\\r ";
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    // Position inside a class right after `[` or `[^`, where `]` is a literal.
    let mut class_start = false;
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => {
                let Some(next) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let (set, negated) = match next {
                    'd' => (Some(DIGIT), false),
                    'D' => (Some(DIGIT), true),
                    'w' => (Some(WORD), false),
                    'W' => (Some(WORD), true),
                    's' => (Some(SPACE), false),
                    'S' => (Some(SPACE), true),
                    _ => (None, false),
                };
                match set {
                    Some(set) if in_class && !negated => out.push_str(set),
                    Some(set) => {
                        out.push('[');
                        if negated {
                            out.push('^');
                        }
                        out.push_str(set);
                        out.push(']');
                    }
                    None => {
                        out.push('\\');
                        out.push(next);
                    }
                }
                class_start = false;
            }
            '[' if !in_class => {
                in_class = true;
                class_start = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    out.push('^');
                }
                continue;
            }
            ']' if in_class && !class_start => {
                in_class = false;
                out.push(']');
            }
            ']' if in_class => {
                // A leading `]` is a literal in PCRE; the `regex` crate wants it escaped.
                out.push_str("\\]");
                class_start = false;
            }
            '[' if in_class => {
                // A literal `[` inside a class (POSIX `[:digit:]` forms are left alone).
                if chars.peek() == Some(&':') {
                    out.push('[');
                } else {
                    out.push_str("\\[");
                }
                class_start = false;
            }
            _ => {
                out.push(ch);
                class_start = false;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_match(pattern: &str, text: &str, expected: Option<Vec<Option<&str>>>) {
        let pat = Pattern::new(pattern).unwrap();
        let got = pat
            .captures(text)
            .map(|list| list.into_iter().map(|range| range.map(|r| &text[r])).collect::<Vec<_>>());
        assert_eq!(got, expected, "pattern {pattern:?} on {text:?}");
    }

    #[test]
    fn erlang_capture_shape() {
        // Trailing unset groups are omitted, non-trailing ones kept as unset (spec `knm_converters` (classifiers and E.164 conversion) `knm_converters`' default `e164_converters`).
        check_match(
            r"^011(\d{5,})$|^00(\d{5,})$",
            "0044123456",
            Some(vec![Some("0044123456"), None, Some("44123456")]),
        );
        check_match(
            r"^011(\d{5,})$|^00(\d{5,})$",
            "01144123456",
            Some(vec![Some("01144123456"), Some("44123456")]),
        );
        check_match(r"^\+1(\d{3})?", "+1", Some(vec![Some("+1")]));
        check_match(r"^\d+$", "12a", None);
    }

    #[test]
    fn digit_class_is_ascii_like_pcre_byte_mode() {
        check_match(r"^\d+$", "١٢٣", None);
        check_match(r"^[\d+]+$", "+12", Some(vec![Some("+12")]));
        check_match(r"^\D+$", "abc", Some(vec![Some("abc")]));
        check_match(r"^[^\d]+$", "abc", Some(vec![Some("abc")]));
        check_match(r"^[]a]+$", "]a", Some(vec![Some("]a")]));
    }

    #[test]
    fn fallback_engine_for_lookaround_and_backreferences() {
        let look = Pattern::new(r"^\+1(?!900)(\d{10})$").unwrap();
        assert_eq!(look.engine(), Engine::Fancy);
        assert!(look.is_match("+14155550100"));
        assert!(!look.is_match("+19005550100"));
        let backref = Pattern::new(r"^(\d)\1").unwrap();
        assert_eq!(backref.engine(), Engine::Fancy);
        assert!(backref.is_match("11"));
        assert_eq!(Pattern::new(r"^\+1\d{10}$").unwrap().engine(), Engine::Regex);
    }

    #[test]
    fn deep_and_huge_patterns_are_refused_before_any_parser() {
        let deep = format!("^\\+1{}5{}$", "(".repeat(10_000), ")".repeat(10_000));
        let err = Pattern::new(&deep).unwrap_err().to_string();
        assert!(err.contains("20006 bytes long"), "{err}");
        assert!(err.len() < 400, "the message clips the pattern: {err}");
        let deep = format!("^\\+1{}5{}$", "(".repeat(1000), ")".repeat(1000));
        let err = Pattern::new(&deep).unwrap_err().to_string();
        assert!(err.contains("nests 1000 levels deep"), "{err}");
        let classes = format!("^{}1", "[".repeat(500));
        assert!(check_bounds(&classes).is_err());
        let stacked = format!("^1{}", "{1}".repeat(200));
        assert!(check_bounds(&stacked).is_err());
        let hidden = format!("^{{{}5", "(".repeat(1000));
        assert!(check_bounds(&hidden).is_err(), "a literal brace hides nothing");
        let huge = format!("^{}", "1".repeat(MAX_PATTERN_BYTES));
        assert!(Pattern::new(&huge).unwrap_err().to_string().contains("bytes long"));
        let ok =
            format!("^{}5{}$", "(".repeat(MAX_PATTERN_NESTING), ")".repeat(MAX_PATTERN_NESTING));
        assert!(Pattern::new(&ok).is_ok());
        assert!(check_bounds(r"^[]a(]+(\d{2,3})?\(x\)$").is_ok());
    }

    #[test]
    fn catastrophic_fallback_patterns_are_refused_and_matches_are_budgeted() {
        let err = Pattern::new(r"^\+(?=\d)((\d+)+)+\2x$").unwrap_err();
        assert!(matches!(err, Error::Catastrophic { .. }), "{err}");
        // The same shape without a fallback-only feature runs in linear time: accepted.
        assert_eq!(Pattern::new(r"^\+((\d+)+)+x$").unwrap().engine(), Engine::Regex);
        // Not nested: one budgeted match, reported as such.
        let slow = Pattern::new(r"^(\d|\d\d|\d\d\d)*(?=x)y").unwrap();
        assert_eq!(slow.engine(), Engine::Fancy);
        let text = format!("{}z", "1".repeat(40));
        assert_eq!(slow.try_captures(&text), Err(BudgetExceeded));
        assert_eq!(slow.try_is_match(&text), Err(BudgetExceeded));
        assert!(!slow.is_match(&text));
    }

    #[test]
    fn broken_pattern_is_an_error_naming_it() {
        let err = Pattern::new("^(+1").unwrap_err();
        assert!(err.to_string().contains("^(+1"), "{err}");
    }
}

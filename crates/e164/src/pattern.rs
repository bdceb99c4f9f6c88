//! Kazoo-compatible regular expressions: PCRE rules compiled with `regex`, or `fancy-regex` when needed.
//!
//! Kazoo evaluates every routing rule, classifier and converter with Erlang's `re` (PCRE) on a
//! binary without the `unicode` option, so `\d`, `\w` and `\s` are ASCII-only.
//! [`Pattern`] keeps that meaning: the shorthand classes are rewritten to explicit ASCII classes
//! before compiling, the fast `regex` engine is tried first, and `fancy-regex` (lookaround,
//! backreferences, atomic groups) is the fallback for rules the first engine rejects.

use std::fmt;
use std::ops::Range;

use crate::Error;

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
    /// [`Error::Regex`] when neither engine accepts the pattern; the message is the
    /// fallback engine's, since it understands the larger PCRE subset.
    pub fn new(source: &str) -> Result<Pattern, Error> {
        let translated = ascii_classes(source);
        let compiled = match regex::Regex::new(&translated) {
            Ok(re) => Compiled::Regex(re),
            Err(_) => match fancy_regex::Regex::new(&translated) {
                Ok(re) => Compiled::Fancy(re),
                Err(err) => {
                    return Err(Error::Regex {
                        pattern: source.to_owned(),
                        message: err.to_string(),
                    })
                }
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
        match &self.compiled {
            Compiled::Regex(re) => re.is_match(text),
            Compiled::Fancy(re) => re.is_match(text).unwrap_or(false),
        }
    }

    /// The first match's capture list in Erlang shape (see [`CaptureList`]), or `None`.
    pub fn captures(&self, text: &str) -> Option<CaptureList> {
        let mut list: CaptureList = match &self.compiled {
            Compiled::Regex(re) => {
                let caps = re.captures(text)?;
                (0..caps.len()).map(|idx| caps.get(idx).map(|m| m.range())).collect()
            }
            Compiled::Fancy(re) => {
                let caps = re.captures(text).ok()??;
                (0..caps.len()).map(|idx| caps.get(idx).map(|m| m.range())).collect()
            }
        };
        while list.len() > 1 && list.last().is_some_and(Option::is_none) {
            list.pop();
        }
        Some(list)
    }
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
        // Trailing unset groups are omitted, non-trailing ones kept as unset (spec §11 rule 54).
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
    fn broken_pattern_is_an_error_naming_it() {
        let err = Pattern::new("^(+1").unwrap_err();
        assert!(err.to_string().contains("^(+1"), "{err}");
    }
}

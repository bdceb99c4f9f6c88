//! Rule regexes: interned by text, analysed once per table build (which matcher reads each,
//! which literal prefixes the index files it under).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::Look;

use crate::config::Config;
use crate::hash::FastBuild;
use crate::resource::{diag, ResourceDoc};
use crate::simple::{PrefixSet, SimplePattern};
use crate::table::{PatternId, Rule, RulePattern, RuleText};
use crate::work::{guarded, map_ordered};
use crate::Diagnostic;

/// Interns rule regexes and their literal prefixes.
///
/// Two phases: [`Builder::note_doc`] lists every rule use in the order the resources make
/// them (the walk mirrors [`doc_resources`]) and numbers the distinct texts by first use,
/// [`Builder::analyze_all`] parses the texts (in parallel) and numbers the valid ones in that
/// order; [`Builder::rules`] then takes each use's result by position, from any thread.
#[derive(Default)]
pub(super) struct Builder<'a> {
    /// Each distinct rule regex; its `prefixes` are set when they can serve as a prefilter.
    pub(super) patterns: Vec<RulePattern>,
    /// Per pattern (same order), the literal prefixes the index files it under.
    pub(super) keys: Vec<IndexKeys>,
    /// Each distinct rule text → its position in `sources` and `results`.
    by_source: HashMap<&'a str, usize, FastBuild>,
    /// Distinct rule texts in first-use order.
    sources: Vec<&'a str>,
    /// Per rule text: its pattern id and shared text (what each [`Rule`] holds), or the
    /// compile error message.
    results: Vec<Result<(PatternId, Arc<str>), String>>,
    /// Every rule use, in walk order: the position of its text in `sources`.
    pub(super) doc_slots: Vec<u32>,
}

/// A document's rule uses, in walk order (see [`Builder::note_doc`]).
pub(super) type Slots<'s> = std::slice::Iter<'s, u32>;

/// The index keys of one pattern.
pub(super) enum IndexKeys {
    /// No anchored literal prefix: filed under the empty key (always evaluated).
    Unindexed,
    /// The pattern's own `prefixes` (all non-empty).
    Prefixes,
    /// A prefix set that contains the empty string ("no constraint"), so it is no prefilter
    /// but still the set of keys.
    Own(PrefixSet),
}

impl<'a> Builder<'a> {
    /// Notes the rule texts of one document in the order [`doc_resources`] uses them.
    pub(super) fn note_doc(&mut self, doc: &'a ResourceDoc, config: &'a Config) {
        if !doc.enabled {
            return;
        }
        match &doc.classifiers {
            None => self.note(&doc.rules),
            Some(classifiers) => {
                for classifier in classifiers {
                    let Some(system) = config.converters.classifier(&classifier.name) else {
                        continue;
                    };
                    let regex = classifier.regex.as_deref().unwrap_or(system.pattern.as_str());
                    self.note_one(regex);
                    self.note(&doc.cid_rules);
                    self.note(&doc.rules_test);
                }
                return;
            }
        }
        self.note(&doc.cid_rules);
        self.note(&doc.rules_test);
    }

    /// Notes a rule list in evaluation order (reverse document order, `stepswitch_resources`' rule compilation).
    fn note(&mut self, sources: &'a [String]) {
        for source in sources.iter().rev() {
            self.note_one(source);
        }
    }

    fn note_one(&mut self, source: &'a str) {
        let slot = match self.by_source.entry(source) {
            std::collections::hash_map::Entry::Occupied(known) => *known.get(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                let new = self.sources.len();
                slot.insert(new);
                self.sources.push(source);
                new
            }
        };
        self.doc_slots.push(slot as u32);
    }

    /// Parses every noted rule text and numbers the valid ones in first-use order.
    pub(super) fn analyze_all(&mut self) {
        let analyzed =
            map_ordered(&self.sources, |source| guarded(|| analyze(source)).and_then(|it| it));
        self.patterns.reserve_exact(analyzed.len());
        self.keys.reserve_exact(analyzed.len());
        self.results.reserve_exact(analyzed.len());
        for result in analyzed {
            self.results.push(result.map(|(pattern, keys)| {
                let id = self.patterns.len() as PatternId;
                let text = Arc::clone(&pattern.source);
                self.patterns.push(pattern);
                self.keys.push(keys);
                (id, text)
            }));
        }
    }

    /// Instead of [`Builder::analyze_all`], for one changed document of a compiled table:
    /// every noted text that compiled before takes its pattern from `known` (text → pattern id
    /// and shared text); the others are analysed again for their error message. `false` when
    /// one of those compiles now, so that the document needs a pattern the table does not have.
    pub(super) fn reuse(&mut self, known: &HashMap<&str, (PatternId, Arc<str>)>) -> bool {
        for source in &self.sources {
            let result = match known.get(source) {
                Some((id, text)) => Ok((*id, Arc::clone(text))),
                None => match guarded(|| analyze(source)).and_then(|it| it) {
                    Ok(_) => return false,
                    Err(message) => Err(message),
                },
            };
            self.results.push(result);
        }
        true
    }

    /// `stepswitch_resources`' rule compilation: compiles a rule list into evaluation order (reverse document order), reporting
    /// and skipping rules that do not compile.
    ///
    /// `slots` are the document's noted rule uses; this list's are next (`note_doc` walks the
    /// documents exactly as `doc_resources` does).
    pub(super) fn rules(
        &self,
        id: &str,
        field: &str,
        sources: &[String],
        slots: &mut Slots<'_>,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Vec<Rule> {
        let mut rules = Vec::with_capacity(sources.len());
        for (doc_index, source) in sources.iter().enumerate().rev() {
            let slot =
                *slots.next().expect("every rule use is noted before the resources are built")
                    as usize;
            debug_assert_eq!(self.sources[slot], source.as_str(), "rule uses out of step");
            match &self.results[slot] {
                Ok((pattern, text)) => {
                    let source = RuleText::from(Arc::clone(text));
                    rules.push(Rule { source, doc_index, pattern: *pattern });
                }
                Err(message) => diagnostics.push(diag(
                    id,
                    field,
                    Some(doc_index),
                    &format!("{message}; rule skipped"),
                )),
            }
        }
        rules
    }
}

/// A pattern with the index keys its anchored literal prefixes give (`None`: not anchored, or
/// no finite set); the prefixes serve as the pattern's prefilter when none is empty.
fn with_keys(mut pattern: RulePattern, prefixes: Option<PrefixSet>) -> (RulePattern, IndexKeys) {
    let keys = match prefixes {
        None => IndexKeys::Unindexed,
        Some(set) => {
            // An empty prefix in the set means "no constraint": no prefilter then.
            if set.iter().all(|it| !it.is_empty()) {
                pattern.prefixes = set;
                IndexKeys::Prefixes
            } else {
                IndexKeys::Own(set)
            }
        }
    };
    (pattern, keys)
}

/// Parses one rule text: the simple matcher's subset, else the `regex` crate's syntax (the
/// engine is built on first use), else the PCRE-capable fallback (built now); `Err` carries
/// the compile error message.
fn analyze(source: &str) -> Result<(RulePattern, IndexKeys), String> {
    // Nothing recursive (our parser, regex-syntax, fancy-regex) sees an unbounded pattern.
    e164::check_bounds(source).map_err(|err| err.to_string())?;
    let pattern = |simple, compiled| RulePattern::new(Arc::from(source), simple, compiled);
    // Fast path: the rule shapes carriers write, parsed and indexed without regex-syntax.
    if let Some(simple) = SimplePattern::parse(source) {
        let prefixes = simple.prefix_keys();
        return Ok(with_keys(pattern(Some(simple), OnceLock::new()), prefixes));
    }
    // Parsed as the engine will read it (PCRE's class syntax and ASCII `\d`).
    match regex_syntax::Parser::new().parse(&e164::translate(source)) {
        Ok(hir) => {
            let prefixes = if hir.properties().look_set_prefix().contains(Look::Start) {
                let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
                seq.literals()
                    .map(|lits| PrefixSet::from_slices(lits.iter().map(|lit| lit.as_bytes())))
            } else {
                None
            };
            // The engine is built on first use; one whose expansion is large might exceed
            // the engine's size limit, so build it now to report that as a diagnostic.
            let cell = OnceLock::new();
            if expanded_size(&hir) > EAGER_BUILD_SIZE {
                let built = e164::Pattern::new(source).map_err(|err| err.to_string())?;
                let _ = cell.set(Some(Box::new(built)));
            }
            Ok(with_keys(pattern(None, cell), prefixes))
        }
        // Not valid for the `regex` crate: lookaround, backreferences... compile it now
        // with the PCRE-capable fallback, or report it.
        Err(_) => match e164::Pattern::new(source) {
            Ok(compiled) => {
                let cell = OnceLock::new();
                let _ = cell.set(Some(Box::new(compiled)));
                let prefixes = superset_prefixes(source)
                    .or_else(|| required_literal_prefix(source).map(|prefix| vec![prefix]))
                    .map(|set| PrefixSet::from_slices(set.iter().map(Vec::as_slice)));
                Ok(with_keys(pattern(None, cell), prefixes))
            }
            Err(err) => Err(err.to_string()),
        },
    }
}

/// Rules whose [`expanded_size`] is larger than this get their engine built at compile time.
const EAGER_BUILD_SIZE: u64 = 2_000;

/// A cheap over-estimate of how many atoms `hir` expands to once counted repetitions are
/// unrolled (what the engine's size limit is about), saturating. The depth is bounded by
/// `e164::check_bounds`.
fn expanded_size(hir: &regex_syntax::hir::Hir) -> u64 {
    use regex_syntax::hir::HirKind;
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => 0,
        HirKind::Literal(_) | HirKind::Class(_) => 1,
        HirKind::Repetition(rep) => {
            let count = u64::from(rep.max.unwrap_or(rep.min).max(rep.min).max(1));
            count.saturating_mul(expanded_size(&rep.sub))
        }
        HirKind::Capture(cap) => expanded_size(&cap.sub),
        HirKind::Concat(items) | HirKind::Alternation(items) => {
            items.iter().fold(0u64, |acc, it| acc.saturating_add(expanded_size(it)))
        }
    }
}

/// Index prefixes for a rule only the PCRE fallback understands: the same rule with its
/// lookarounds removed, backreferences widened to `.*` and atomic/possessive forms relaxed
/// matches a superset of texts, so its anchored literal prefixes are still required.
pub(super) fn superset_prefixes(source: &str) -> Option<Vec<Vec<u8>>> {
    let widened = widen_for_index(source)?;
    let hir = regex_syntax::Parser::new().parse(&widened).ok()?;
    if !hir.properties().look_set_prefix().contains(Look::Start) {
        return None;
    }
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
    seq.literals().map(|lits| lits.iter().map(|lit| lit.as_bytes().to_vec()).collect())
}

fn widen_for_index(source: &str) -> Option<String> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut idx = 0;
    let mut in_class = false;
    let mut last_escaped = false;
    while idx < chars.len() {
        let ch = chars[idx];
        let was_escaped = std::mem::replace(&mut last_escaped, false);
        if ch == '\\' {
            last_escaped = true;
            let next = *chars.get(idx + 1)?;
            if !in_class && next.is_ascii_digit() && next != '0' {
                out.push_str("(?:.*)");
            } else {
                out.push(ch);
                out.push(next);
            }
            idx += 2;
            continue;
        }
        if in_class {
            in_class = ch != ']';
            out.push(ch);
            idx += 1;
            continue;
        }
        let ahead: String = chars[idx..chars.len().min(idx + 4)].iter().collect();
        if ahead.starts_with("(?=")
            || ahead.starts_with("(?!")
            || ahead.starts_with("(?<=")
            || ahead.starts_with("(?<!")
        {
            // Skip the whole lookaround group.
            let mut depth = 0usize;
            let mut class = false;
            while idx < chars.len() {
                match chars[idx] {
                    '\\' => idx += 1,
                    '[' if !class => class = true,
                    ']' if class => class = false,
                    '(' if !class => depth += 1,
                    ')' if !class => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                idx += 1;
            }
            idx += 1;
            continue;
        }
        if ahead.starts_with("(?>") {
            out.push_str("(?:");
            idx += 3;
            continue;
        }
        if ch == '+' && idx > 0 && matches!(chars[idx - 1], '+' | '*' | '?' | '}') && !was_escaped {
            // Possessive quantifier: drop the `+`.
            idx += 1;
            continue;
        }
        if ch == '[' {
            in_class = true;
            if chars.get(idx + 1) == Some(&']') {
                out.push_str("[]");
                idx += 2;
                continue;
            }
        }
        out.push(ch);
        idx += 1;
    }
    Some(out)
}

/// The literal text right after a leading `^` that every match must start with, for rules
/// only the PCRE fallback understands (e.g. `^\+1(?!900)\d{10}$` → `+1`). Conservative: any
/// `|` in the pattern, or no leading `^`, gives `None` (the rule is then evaluated for every
/// lookup); a literal followed by a quantifier that may skip it is dropped.
pub(super) fn required_literal_prefix(source: &str) -> Option<Vec<u8>> {
    let rest = source.strip_prefix('^')?;
    if source.contains('|') {
        return None;
    }
    let bytes = rest.as_bytes();
    let mut prefix = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let (literal, width) = match bytes[pos] {
            b'\\' => match bytes.get(pos + 1) {
                Some(escaped) if escaped.is_ascii_punctuation() => (*escaped, 2),
                _ => break,
            },
            byte if byte.is_ascii_alphanumeric() => (byte, 1),
            _ => break,
        };
        if matches!(bytes.get(pos + width), Some(b'?' | b'*' | b'{')) {
            break;
        }
        prefix.push(literal);
        pos += width;
        if matches!(bytes.get(pos), Some(b'+')) {
            break;
        }
    }
    Some(prefix)
}

//! Compilation of resource documents into a [`RouteTable`] (rules 9-14).
//!
//! One call compiles one scope (the global `offnet` table or one account's table), so the
//! reactor can rebuild only the table a change touches. Compilation never fails as a whole:
//! a document or a rule that cannot be used is reported as a [`Diagnostic`] and left out.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, OnceLock};

use rayon::prelude::*;
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::Look;
use serde_json::{Map, Value};

use crate::config::Config;
use crate::resource::{diag, is_true, GatewayDoc, PrivacyOptions, ResourceDoc};
use crate::simple::{PrefixSet, SimplePattern};
use crate::table::{
    Gateway, Hot, PatternId, PrefixTrie, Proxy, Resource, RouteTable, Rule, RulePattern, RuleText,
    Scope,
};
use crate::Diagnostic;

/// Compiles raw resource documents (as read from db `offnet` or an account db) into the table
/// of `scope`.
///
/// Documents that are not live resources (`pvt_type` other than `resource`, deleted) are
/// ignored; the input order does not matter (rows are sorted by `_id` as the view does, rule 7);
/// of two documents with the same `_id` the later wins and the clash is reported. `proxies` are
/// the account's dedicated IPs for a local scope (rule 8; already reduced to the first one when
/// `use_first_dedicated_proxy_only`), ignored for the global scope.
pub fn compile(
    scope: Scope,
    docs: &[Value],
    proxies: &[Proxy],
    config: &Config,
) -> (RouteTable, Vec<Diagnostic>) {
    // Parsed in parallel for large inputs; collected in input order.
    let parsed =
        map_ordered(docs, |doc| ResourceDoc::is_resource(doc).then(|| ParsedResource::parse(doc)));
    let (table, diagnostics) = compile_parsed(scope, parsed.iter().flatten(), proxies, config);
    // The parsed documents are many small allocations: free them on the pool too.
    if parsed.len() >= PARALLEL_MIN {
        parsed.into_par_iter().for_each(drop);
    }
    (table, diagnostics)
}

/// The rule problems the router would report for one resource document: every rule
/// (`rules`, `cid_rules`, `rules_test`, a classifier's `regex`) it cannot compile or has
/// quarantined, named by field and position. This is [`compile`] itself run on the document as
/// if it were a live, enabled resource, so what an API write is refused for is exactly what
/// routing would leave out.
pub fn rule_diagnostics(doc: &Value, config: &Config) -> Vec<Diagnostic> {
    let mut live = doc.clone();
    if let Some(fields) = live.as_object_mut() {
        fields.insert("pvt_type".into(), Value::String("resource".into()));
        fields.insert("enabled".into(), Value::Bool(true));
        fields.remove("pvt_deleted");
        if fields.get("_id").and_then(Value::as_str).is_none_or(str::is_empty) {
            fields.insert("_id".into(), Value::String("new".into()));
        }
    }
    let (_, diagnostics) = compile(Scope::Global, std::slice::from_ref(&live), &[], config);
    diagnostics
        .into_iter()
        .filter(|it| match it.field.as_str() {
            "rules" | "cid_rules" | "rules_test" => it.index.is_some(),
            field => field.starts_with("classifiers.") && field.ends_with(".regex"),
        })
        .collect()
}

/// A resource document parsed once: what a reactor keeps per `_id`, so that a rebuild after a
/// change re-parses only the changed document. Holds the typed document (`None` when the
/// document could not be used at all) and the diagnostics parsing raised.
#[derive(Debug, Clone)]
pub struct ParsedResource {
    doc: Option<ResourceDoc>,
    diagnostics: Vec<Diagnostic>,
}

impl ParsedResource {
    /// Parses one resource document ([`ResourceDoc::from_json`]); a document that cannot be
    /// used becomes a diagnostic (`…; document skipped`), as [`compile`] reports it.
    pub fn parse(doc: &Value) -> ParsedResource {
        match guarded(|| ResourceDoc::from_json(doc)).and_then(|it| it.map_err(|e| e.to_string())) {
            Ok((doc, diagnostics)) => ParsedResource { doc: Some(doc), diagnostics },
            Err(err) => {
                let id = doc.get("_id").and_then(Value::as_str).unwrap_or("");
                let skipped = diag(id, "", None, &format!("{err}; document skipped"));
                ParsedResource { doc: None, diagnostics: vec![skipped] }
            }
        }
    }

    /// Parses many documents, on rayon's pool when there are many, in input order.
    pub fn parse_all(docs: &[Value]) -> Vec<ParsedResource> {
        map_ordered(docs, ParsedResource::parse)
    }
}

/// [`compile`] for documents already parsed ([`ParsedResource`]), in input order: the same
/// table and diagnostics `compile` gives for the documents they were parsed from.
pub fn compile_parsed<'a>(
    scope: Scope,
    docs: impl IntoIterator<Item = &'a ParsedResource>,
    proxies: &[Proxy],
    config: &Config,
) -> (RouteTable, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let mut typed = Vec::new();
    for parsed in docs {
        diagnostics.extend(parsed.diagnostics.iter().cloned());
        typed.extend(parsed.doc.as_ref());
    }
    let (table, mut more) = compile_refs(scope, typed, proxies, config);
    diagnostics.append(&mut more);
    (table, diagnostics)
}

/// [`compile`] for documents already parsed into [`ResourceDoc`]s (what a reactor that keeps
/// its typed documents calls; the same rules apply).
pub fn compile_docs(
    scope: Scope,
    docs: &[ResourceDoc],
    proxies: &[Proxy],
    config: &Config,
) -> (RouteTable, Vec<Diagnostic>) {
    compile_refs(scope, docs.iter().collect(), proxies, config)
}

/// [`compile_docs`] over references to the documents, in input order.
fn compile_refs(
    scope: Scope,
    mut docs: Vec<&ResourceDoc>,
    proxies: &[Proxy],
    config: &Config,
) -> (RouteTable, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    // Rule 7: view rows in `_id` order (byte order = ICU collation for Kazoo's ids).
    docs.sort_by(|a, b| a.id.cmp(&b.id));
    let mut deduped: Vec<&ResourceDoc> = Vec::with_capacity(docs.len());
    for doc in docs {
        if deduped.last().is_some_and(|prev| prev.id == doc.id) {
            diagnostics.push(diag(&doc.id, "_id", None, "duplicate _id; the later document wins"));
            deduped.pop();
        }
        deduped.push(doc);
    }
    let global = scope.is_global();
    let proxies: Vec<Proxy> = if global { Vec::new() } else { proxies.to_vec() };
    // Every distinct rule text, in first-use order (so pattern ids never depend on
    // threads), analysed in parallel for large tables.
    let mut builder = Builder::default();
    let mut doc_starts = Vec::with_capacity(deduped.len() + 1);
    for &doc in &deduped {
        doc_starts.push(builder.doc_slots.len());
        builder.note_doc(doc, config);
    }
    doc_starts.push(builder.doc_slots.len());
    builder.analyze_all();
    // The resources of each document, built in parallel for large tables and collected in
    // view order with their diagnostics; each document gets the slots its walk noted.
    let jobs: Vec<(&ResourceDoc, &[u32])> = deduped
        .iter()
        .zip(doc_starts.windows(2))
        .map(|(doc, range)| (*doc, &builder.doc_slots[range[0]..range[1]]))
        .collect();
    // One document's failure is that document's diagnostic, never the table's (the bounds on
    // rules make a panic here a defect; this is the last line of defence).
    let built = map_ordered(&jobs, |(doc, slots)| {
        guarded(|| doc_resources(doc, &mut slots.iter(), global, &proxies, config, &builder))
            .unwrap_or_else(|message| {
                let skipped = diag(&doc.id, "", None, &format!("{message}; document skipped"));
                (Built::Many(Vec::new()), vec![skipped])
            })
    });
    let mut resources = Vec::with_capacity(deduped.len());
    for (doc_resources, mut doc_diagnostics) in built {
        match doc_resources {
            Built::One(res) => resources.push(res),
            Built::Many(mut copies) => resources.append(&mut copies),
        }
        diagnostics.append(&mut doc_diagnostics);
    }
    // Room for every key once (shared prefixes make the real count smaller).
    let n_keys = builder
        .keys
        .iter()
        .zip(&builder.patterns)
        .map(|(keys, pattern)| match keys {
            IndexKeys::Unindexed => 1,
            IndexKeys::Prefixes => pattern.prefixes.len(),
            IndexKeys::Own(keys) => keys.len(),
        })
        .sum();
    let mut index = PrefixTrie::with_capacity(n_keys);
    let mut by_classifier: HashMap<String, Vec<u32>> = HashMap::new();
    for (idx, res) in resources.iter().enumerate() {
        let idx = idx as u32;
        if res.rules.is_empty() {
            // Rule 21: never matches, so it needs no index entry.
        }
        for (pos, rule) in res.rules.iter().enumerate() {
            let pos = pos as u32;
            let keys = match &builder.keys[rule.pattern as usize] {
                IndexKeys::Unindexed => {
                    index.insert(b"", idx, pos, rule.pattern);
                    continue;
                }
                IndexKeys::Prefixes => &builder.patterns[rule.pattern as usize].prefixes,
                IndexKeys::Own(keys) => keys,
            };
            for prefix in keys.iter() {
                index.insert(prefix, idx, pos, rule.pattern);
            }
        }
        if let Some(class) = &res.classifier {
            by_classifier.entry(class.clone()).or_default().push(idx);
        }
    }
    index.finish();
    let patterns = builder.patterns;
    let hot = resources.iter().map(Hot::of).collect();
    let backtracking = patterns.iter().any(RulePattern::needs_backtracking);
    (
        RouteTable { scope, resources, patterns, index, by_classifier, hot, backtracking },
        diagnostics,
    )
}

/// Runs `f`, turning a panic into an error message (`internal error: …`), so that one
/// document or rule can never take a whole table build down.
fn guarded<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let detail = payload
            .downcast_ref::<&str>()
            .map(|it| (*it).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        format!("internal error: {detail}")
    })
}

/// Inputs at least this long are processed on rayon's pool (smaller ones are not worth the
/// hand-off).
const PARALLEL_MIN: usize = 256;

/// `items.map(f)` in order: on rayon's pool when there are many items, inline otherwise.
fn map_ordered<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync + Send) -> Vec<R> {
    if items.len() < PARALLEL_MIN {
        items.iter().map(f).collect()
    } else {
        items.par_iter().map(f).collect()
    }
}

/// The resources one (deduplicated, view-ordered) document yields, and its diagnostics.
fn doc_resources(
    doc: &ResourceDoc,
    slots: &mut Slots<'_>,
    global: bool,
    proxies: &[Proxy],
    config: &Config,
    builder: &Builder,
) -> (Built, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let mut resources = Vec::new();
    // Rule 13: disabled documents are skipped.
    if !doc.enabled {
        return (Built::Many(resources), diagnostics);
    }
    match &doc.classifiers {
        None => {
            let res = base_resource(doc, slots, global, proxies, config, builder, &mut diagnostics);
            return (Built::One(res), diagnostics);
        }
        Some(classifiers) => {
            // Rule 14: one copy per classifier known to the system; the doc itself is not
            // loaded, and `"classifiers": {}` yields nothing.
            for (class_idx, classifier) in classifiers.iter().enumerate() {
                let Some(system) = config.converters.classifier(&classifier.name) else {
                    diagnostics.push(diag(
                        &doc.id,
                        &format!("classifiers.{}", classifier.name),
                        Some(class_idx),
                        "not a system classifier (number_manager.classifiers); ignored as Kazoo does",
                    ));
                    continue;
                };
                let regex =
                    classifier.regex.clone().unwrap_or_else(|| system.pattern.as_str().to_owned());
                let mut copy = doc.clone();
                copy.id = format!("{}-{}", doc.id, classifier.name);
                copy.name =
                    Some(format!("{} - {}", doc.name.as_deref().unwrap_or(""), classifier.name));
                copy.rules = vec![regex];
                if classifier.weight_cost.is_some() {
                    copy.weight_cost = classifier.weight_cost;
                }
                copy.emergency = if classifier.name == "emergency" {
                    classifier.emergency.unwrap_or(true)
                } else {
                    classifier.emergency.unwrap_or(system.emergency || doc.emergency)
                };
                for gateway in &mut copy.gateways {
                    if let Some(prefix) = &classifier.prefix {
                        gateway.prefix = Some(prefix.clone());
                    }
                    if let Some(suffix) = &classifier.suffix {
                        gateway.suffix = Some(suffix.clone());
                    }
                }
                let before = diagnostics.len();
                let mut res =
                    base_resource(&copy, slots, global, proxies, config, builder, &mut diagnostics);
                // The copy's one rule is the classifier's regex: say so, on the document.
                for found in &mut diagnostics[before..] {
                    if found.field == "rules" {
                        found.doc_id = doc.id.clone();
                        found.field = format!("classifiers.{}.regex", classifier.name);
                        found.index = None;
                    }
                }
                res.doc_id = doc.id.clone();
                res.classifier = Some(classifier.name.clone());
                res.classifier_enable = classifier.enabled.unwrap_or(true);
                resources.push(res);
            }
        }
    }
    (Built::Many(resources), diagnostics)
}

/// The resources of one document: the document itself, or its classifier copies (rule 14).
/// Inline, so the usual single resource costs no allocation of its own on the way.
#[allow(clippy::large_enum_variant)]
enum Built {
    One(Resource),
    Many(Vec<Resource>),
}

/// Interns rule regexes and their literal prefixes.
///
/// Two phases: [`Builder::note_doc`] lists every rule use in the order the resources make
/// them (the walk mirrors [`doc_resources`]) and numbers the distinct texts by first use,
/// [`Builder::analyze_all`] parses the texts (in parallel) and numbers the valid ones in that
/// order; [`Builder::rules`] then takes each use's result by position, from any thread.
#[derive(Default)]
struct Builder<'a> {
    /// Each distinct rule regex; its `prefixes` are set when they can serve as a prefilter.
    patterns: Vec<RulePattern>,
    /// Per pattern (same order), the literal prefixes the index files it under.
    keys: Vec<IndexKeys>,
    /// Each distinct rule text → its position in `sources` and `results`.
    by_source: HashMap<&'a str, usize, FastBuild>,
    /// Distinct rule texts in first-use order.
    sources: Vec<&'a str>,
    /// Per rule text: its pattern id, or the compile error message.
    results: Vec<Result<PatternId, String>>,
    /// Per pattern id: its shared text (what each [`Rule`] holds).
    texts: Vec<Arc<str>>,
    /// Every rule use, in walk order: the position of its text in `sources`.
    doc_slots: Vec<u32>,
}

/// A document's rule uses, in walk order (see [`Builder::note_doc`]).
type Slots<'s> = std::slice::Iter<'s, u32>;

/// The index keys of one pattern.
enum IndexKeys {
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
    fn note_doc(&mut self, doc: &'a ResourceDoc, config: &'a Config) {
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

    /// Notes a rule list in evaluation order (reverse document order, rule 10).
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
    fn analyze_all(&mut self) {
        let analyzed =
            map_ordered(&self.sources, |source| guarded(|| analyze(source)).and_then(|it| it));
        self.patterns.reserve_exact(analyzed.len());
        self.keys.reserve_exact(analyzed.len());
        self.results.reserve_exact(analyzed.len());
        for result in analyzed {
            self.results.push(result.map(|(pattern, keys)| {
                let id = self.patterns.len() as PatternId;
                self.texts.push(Arc::clone(&pattern.source));
                self.patterns.push(pattern);
                self.keys.push(keys);
                id
            }));
        }
    }

    /// Rule 10: compiles a rule list into evaluation order (reverse document order), reporting
    /// and skipping rules that do not compile.
    ///
    /// `slots` are the document's noted rule uses; this list's are next (`note_doc` walks the
    /// documents exactly as `doc_resources` does).
    fn rules(
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
                Ok(pattern) => {
                    let pattern = *pattern;
                    let source = Arc::clone(&self.texts[pattern as usize]);
                    rules.push(Rule { source: RuleText::from(source), doc_index, pattern });
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
fn superset_prefixes(source: &str) -> Option<Vec<Vec<u8>>> {
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
fn required_literal_prefix(source: &str) -> Option<Vec<u8>> {
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

fn base_resource(
    doc: &ResourceDoc,
    slots: &mut Slots<'_>,
    global: bool,
    proxies: &[Proxy],
    config: &Config,
    builder: &Builder,
    diagnostics: &mut Vec<Diagnostic>,
) -> Resource {
    let rules = builder.rules(&doc.id, "rules", &doc.rules, slots, diagnostics);
    let cid_rules = builder.rules(&doc.id, "cid_rules", &doc.cid_rules, slots, diagnostics);
    let rules_test = builder.rules(&doc.id, "rules_test", &doc.rules_test, slots, diagnostics);
    // Rule 12: default, then clamp to 1..=100.
    let weight = doc.weight_cost.unwrap_or(config.default_weight).clamp(1, 100);
    let grace_period = doc.grace_period.unwrap_or(config.default_weight).clamp(0, 100);
    let emergency = doc.emergency || doc.caller_id_options.kind.as_deref() == Some("emergency");
    let mut codecs: Vec<String> =
        doc.media.audio.codecs.clone().unwrap_or_else(|| config.default_audio_codecs.clone());
    codecs.extend(
        doc.media.video.codecs.clone().unwrap_or_else(|| config.default_video_codecs.clone()),
    );
    if codecs.is_empty() {
        codecs = config.default_codecs.clone();
    }
    let defaults = GatewayDefaults {
        emergency,
        format_from_uri: doc.format_from_uri,
        from_uri_realm: doc.from_uri_realm.clone(),
        from_account_realm: doc.from_account_realm,
        fax_option: doc.media.fax_option.unwrap_or(false),
        codecs,
        bypass_media: doc.media.bypass_media.unwrap_or(config.default_bypass_media),
        privacy_method: privacy_method(
            &doc.caller_id_options,
            &doc.privacy,
            doc.privacy_mode.as_deref(),
            &doc.extra,
            &config.default_privacy_method,
        ),
        hide_name: should_hide(
            HideWhat::Name,
            &doc.caller_id_options.outbound_privacy,
            &doc.privacy,
            doc.privacy_mode.as_deref(),
            &doc.extra,
        ),
        hide_number: should_hide(
            HideWhat::Number,
            &doc.caller_id_options.outbound_privacy,
            &doc.privacy,
            doc.privacy_mode.as_deref(),
            &doc.extra,
        ),
    };
    // Rules 11 and 13: enabled gateways, document order.
    let gateways = doc
        .gateways
        .iter()
        .enumerate()
        .filter(|(_, gw)| gw.enabled)
        .map(|(doc_index, gw)| gateway(doc_index, gw, &defaults, config))
        .collect();
    Resource {
        id: doc.id.clone(),
        doc_id: doc.id.clone(),
        name: doc.name.clone(),
        weight,
        grace_period,
        flags: doc.flags.clone(),
        require_flags: doc.require_flags,
        ignore_flags: doc.ignore_flags,
        rules,
        cid_rules,
        rules_test,
        emergency,
        classifier: None,
        classifier_enable: true,
        gateways,
        gateway_strategy: doc.gateway_strategy,
        global,
        proxies: proxies.to_vec(),
        formatters: doc.formatters.clone().or_else(|| config.default_formatters.clone()),
    }
}

struct GatewayDefaults {
    emergency: bool,
    format_from_uri: bool,
    from_uri_realm: Option<String>,
    from_account_realm: bool,
    fax_option: bool,
    codecs: Vec<String>,
    bypass_media: bool,
    privacy_method: &'static str,
    hide_name: bool,
    hide_number: bool,
}

fn gateway(
    doc_index: usize,
    gw: &GatewayDoc,
    defaults: &GatewayDefaults,
    config: &Config,
) -> Gateway {
    let endpoint_type = shared(
        gw.endpoint_type.as_deref().filter(|it| !it.is_empty()).unwrap_or("sip"),
        &["sip", "freetdm", "skype", "amqp"],
    );
    let mut endpoint_options = Map::new();
    match &*endpoint_type {
        "freetdm" => {
            insert_some(&mut endpoint_options, "Span", gw.span.clone());
            endpoint_options.insert(
                "Channel-Selection".into(),
                Value::String(gw.channel_selection.clone().unwrap_or_else(|| "ascending".into())),
            );
        }
        "skype" => {
            // Quirk 66 kept: Kazoo reads `interface`, not the schema's `skype_interface`.
            insert_some(&mut endpoint_options, "Skype-Interface", gw.interface.clone());
            endpoint_options.insert("Skype-RR".into(), Value::Bool(gw.skype_rr.unwrap_or(true)));
        }
        "sip" => insert_some(&mut endpoint_options, "Route-ID", gw.route_id.clone()),
        _ => {}
    }
    let method = privacy_method(
        &gw.caller_id_options,
        &gw.privacy,
        gw.privacy_mode.as_deref(),
        &gw.extra,
        defaults.privacy_method,
    );
    let hide_name = defaults.hide_name
        || should_hide(
            HideWhat::Name,
            &gw.caller_id_options.outbound_privacy,
            &gw.privacy,
            gw.privacy_mode.as_deref(),
            &gw.extra,
        );
    // Bug 62 fixed: Kazoo computes the gateway's hide-number with the hide-name check.
    let hide_number = defaults.hide_number
        || should_hide(
            HideWhat::Number,
            &gw.caller_id_options.outbound_privacy,
            &gw.privacy,
            gw.privacy_mode.as_deref(),
            &gw.extra,
        );
    Gateway {
        doc_index,
        endpoint_type,
        server: gw.server.clone().filter(|it| !it.is_empty()),
        port: gw.port,
        realm: gw.realm.clone(),
        username: gw.username.clone(),
        password: gw.password.clone(),
        ccvs: outbound(gw.custom_channel_vars.as_ref()),
        sip_headers: outbound(gw.custom_sip_headers.as_ref()),
        sip_interface: gw.custom_sip_interface.clone().filter(|it| !it.is_empty()),
        invite_format: shared(
            gw.invite_format.as_deref().unwrap_or("route"),
            &["route", "username", "e164", "npan", "1npan", "loopback", "strip_plus"],
        ),
        format_from_uri: gw.format_from_uri.unwrap_or(defaults.format_from_uri),
        from_uri_realm: gw
            .from_uri_realm
            .clone()
            .filter(|it| !it.is_empty())
            .or_else(|| defaults.from_uri_realm.clone()),
        from_account_realm: gw.from_account_realm.unwrap_or(defaults.from_account_realm),
        emergency: defaults.emergency || gw.emergency.unwrap_or(false),
        fax_option: gw.media.fax_option.unwrap_or(defaults.fax_option),
        codecs: gw.codecs.clone().unwrap_or_else(|| defaults.codecs.clone()),
        bypass_media: gw.bypass_media.unwrap_or(defaults.bypass_media),
        force_port: gw.force_port,
        route: gw
            .route
            .clone()
            .filter(|it| !it.is_empty())
            .or_else(|| config.default_route.clone()),
        prefix: gw.prefix.clone().unwrap_or_else(|| config.default_prefix.clone()),
        suffix: gw.suffix.clone().unwrap_or_else(|| config.default_suffix.clone()),
        rtcp_mux: gw.media.rtcp_mux.clone().or_else(|| config.default_rtcp_mux.clone()),
        caller_id_type: shared(
            gw.caller_id_type
                .as_deref()
                .filter(|it| !it.is_empty())
                .unwrap_or(&config.default_caller_id_type),
            &["external", "internal", "emergency"],
        ),
        progress_timeout: gw.progress_timeout.unwrap_or(config.default_progress_timeout),
        endpoint_options,
        privacy_method: Cow::Borrowed(method),
        privacy_hide_name: hide_name,
        privacy_hide_number: hide_number,
        invite_parameters: gw.invite_parameters.clone(),
    }
}

fn insert_some(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value.filter(|it| !it.is_null()) {
        map.insert(key.into(), value);
    }
}

/// `kz_custom_sip_headers:outbound/1`: the `out` object merged over the legacy top-level keys
/// (everything but `in`/`out`); `out` wins.
pub(crate) fn outbound(headers: Option<&Map<String, Value>>) -> Map<String, Value> {
    let Some(headers) = headers else { return Map::new() };
    let mut out: Map<String, Value> = headers
        .iter()
        .filter(|(key, _)| key.as_str() != "in" && key.as_str() != "out")
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    if let Some(Value::Object(over)) = headers.get("out") {
        for (key, value) in over {
            out.insert(key.clone(), value.clone());
        }
    }
    out
}

/// `kz_privacy:get_method/2`: first defined of `caller_id_options.privacy_method`,
/// `privacy.method`, `Privacy-Method`, `privacy_mode`, else the default; `sip` or `kazoo`.
fn privacy_method(
    cid: &crate::resource::CallerIdOptions,
    privacy: &PrivacyOptions,
    mode: Option<&str>,
    extra: &Map<String, Value>,
    default: &str,
) -> &'static str {
    let first = cid
        .privacy_method
        .as_deref()
        .or(privacy.method.as_deref())
        .or_else(|| extra.get("Privacy-Method").and_then(Value::as_str))
        .or(mode)
        .unwrap_or(default);
    if first == "sip" {
        "sip"
    } else {
        "kazoo"
    }
}

/// `text` as a shared static string when it is one of `known` (the usual values: no
/// allocation per gateway), else an owned copy.
fn shared(text: &str, known: &[&'static str]) -> Cow<'static, str> {
    match known.iter().find(|it| **it == text) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(text.to_owned()),
    }
}

#[derive(Clone, Copy)]
enum HideWhat {
    Name,
    Number,
}

/// `kz_privacy:should_hide_name/1` / `should_hide_number/1` on a resource or gateway object.
fn should_hide(
    what: HideWhat,
    outbound_privacy: &Option<Value>,
    privacy: &PrivacyOptions,
    mode: Option<&str>,
    extra: &Map<String, Value>,
) -> bool {
    let (own, key, ccv_key, word) = match what {
        HideWhat::Name => {
            (&privacy.hide_name, "Privacy-Hide-Name", "Caller-Privacy-Hide-Name", "hide_name")
        }
        HideWhat::Number => (
            &privacy.hide_number,
            "Privacy-Hide-Number",
            "Caller-Privacy-Hide-Number",
            "hide_number",
        ),
    };
    let short = match what {
        HideWhat::Name => "name",
        HideWhat::Number => "number",
    };
    let ccvs = extra.get("Custom-Channel-Vars");
    let first = outbound_privacy
        .as_ref()
        .or(own.as_ref())
        .or_else(|| extra.get(key))
        .or_else(|| ccvs.and_then(|it| it.get(key)))
        .or_else(|| extra.get(ccv_key))
        .or_else(|| ccvs.and_then(|it| it.get(ccv_key)));
    match first {
        Some(Value::String(text)) => {
            matches!(text.as_str(), "yes" | "full" | "kazoo")
                || text == word
                || text == short
                || text.eq_ignore_ascii_case("true")
        }
        Some(other) => is_true(Some(other)),
        None => match mode {
            Some(text) => {
                matches!(text, "yes" | "full" | "kazoo")
                    || text == word
                    || text == short
                    || text.eq_ignore_ascii_case("true")
            }
            None => false,
        },
    }
}

/// The hasher of the compile-time maps (rule texts, literal prefixes): a multiply-fold over
/// 8-byte words, several times faster than SipHash on these short keys. Not randomly seeded:
/// the keys are the operator's own rules, not attacker-chosen input.
#[derive(Clone, Copy)]
pub(crate) struct FastHasher(u64);

/// `BuildHasher` for [`FastHasher`].
pub(crate) type FastBuild = BuildHasherDefault<FastHasher>;

impl Default for FastHasher {
    fn default() -> FastHasher {
        FastHasher(0x243F_6A88_85A3_08D3)
    }
}

impl FastHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        let full = u128::from(self.0 ^ word) * u128::from(0x2D35_8DCC_AA6C_78A5u64);
        self.0 = (full as u64) ^ ((full >> 64) as u64);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            let mut word = [0u8; 8];
            word[..tail.len()].copy_from_slice(tail);
            // The tail's length goes into the top byte, so `ab` and `ab\0` differ.
            self.mix(u64::from_le_bytes(word) ^ ((tail.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, value: u8) {
        self.mix(u64::from(value));
    }

    #[inline]
    fn write_u32(&mut self, value: u32) {
        self.mix(u64::from(value));
    }

    #[inline]
    fn write_u64(&mut self, value: u64) {
        self.mix(value);
    }

    #[inline]
    fn write_usize(&mut self, value: usize) {
        self.mix(value as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config() -> Config {
        Config::kazoo_defaults()
    }

    fn ids(table: &RouteTable) -> Vec<&str> {
        table.resources().iter().map(|it| it.id.as_str()).collect()
    }

    #[test]
    fn rule_7_and_9_view_order_and_non_resources() {
        let docs = vec![
            json!({"_id": "b", "pvt_type": "resource", "rules": ["^1"]}),
            json!({"_id": "a", "pvt_type": "resource", "rules": ["^1"]}),
            json!({"_id": "c", "pvt_type": "device"}),
            json!({"_id": "d", "pvt_type": "resource", "pvt_deleted": true}),
        ];
        let (table, diagnostics) = compile(Scope::Global, &docs, &[], &config());
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        assert_eq!(ids(&table), vec!["a", "b"]);
    }

    #[test]
    fn rule_10_rules_in_reverse_order_and_bad_rules_reported() {
        let docs = vec![json!({"_id": "r", "pvt_type": "resource",
            "rules": ["^\\+1(\\d{10})$", "^(+", "^\\+1(?!900)(\\d{10})$"]})];
        let (table, diagnostics) = compile(Scope::Global, &docs, &[], &config());
        let res = &table.resources()[0];
        let order: Vec<usize> = res.rules.iter().map(|it| it.doc_index).collect();
        assert_eq!(order, vec![2, 0]);
        assert_eq!(diagnostics.len(), 1);
        assert_eq!(
            (diagnostics[0].doc_id.as_str(), diagnostics[0].field.as_str(), diagnostics[0].index),
            ("r", "rules", Some(1))
        );
        assert!(diagnostics[0].message.contains("^(+"), "{}", diagnostics[0].message);
    }

    #[test]
    fn rule_12_weight_default_and_clamp() {
        let check = |weight: Value, expected: i64| {
            let doc = json!({"_id": "r", "pvt_type": "resource", "weight_cost": weight});
            let (table, _) = compile(Scope::Global, &[doc], &[], &config());
            assert_eq!(table.resources()[0].weight, expected, "{weight}");
        };
        check(Value::Null, 3);
        check(json!(0), 1);
        check(json!(-5), 1);
        check(json!(250), 100);
        check(json!("42"), 42);
    }

    #[test]
    fn rule_13_disabled_docs_and_gateways() {
        let docs = vec![
            json!({"_id": "off", "pvt_type": "resource", "enabled": false}),
            json!({"_id": "on", "pvt_type": "resource", "gateways": [
                {"server": "a", "enabled": "false"}, {"server": "b"}]}),
        ];
        let (table, _) = compile(Scope::Global, &docs, &[], &config());
        assert_eq!(ids(&table), vec!["on"]);
        let servers: Vec<_> =
            table.resources()[0].gateways.iter().map(|g| g.server.as_deref()).collect();
        assert_eq!(servers, vec![Some("b")]);
    }

    #[test]
    fn rule_14_classifier_expansion() {
        let docs = vec![json!({"_id": "r", "pvt_type": "resource", "name": "Carrier",
        "rules": ["^ignored$"], "weight_cost": 10, "flags": ["x"],
        "gateways": [{"server": "gw", "prefix": "9"}],
        "classifiers": {
            "tollfree_us": {"weight_cost": 2, "prefix": "+1"},
            "nonexistent": {},
            "emergency": {"enabled": false},
            "did_us": {"regex": "^\\+1(\\d{10})$", "suffix": ""}
        }})];
        let (table, diagnostics) = compile(Scope::Global, &docs, &[], &config());
        assert_eq!(ids(&table), vec!["r-tollfree_us", "r-emergency", "r-did_us"]);
        assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
        let [tollfree, emergency, did] = table.resources() else { panic!("three copies") };
        assert_eq!(tollfree.name.as_deref(), Some("Carrier - tollfree_us"));
        assert_eq!(tollfree.weight, 2);
        assert_eq!(did.weight, 10);
        assert_eq!(tollfree.rules[0].source, e164::DEFAULT_CLASSIFIERS[0].1);
        assert_eq!(did.rules[0].source, "^\\+1(\\d{10})$");
        assert_eq!(tollfree.gateways[0].prefix, "+1");
        assert_eq!(did.gateways[0].prefix, "9");
        assert!(emergency.emergency && !emergency.classifier_enable);
        assert!(!tollfree.emergency);
        assert_eq!(tollfree.flags, vec!["x"]);
        assert_eq!(tollfree.doc_id, "r");
        // `"classifiers": {}` yields no resource at all.
        let (empty, _) = compile(
            Scope::Global,
            &[json!({"_id": "e", "pvt_type": "resource", "classifiers": {}})],
            &[],
            &config(),
        );
        assert!(empty.is_empty());
    }

    #[test]
    fn rule_8_local_tables_get_proxies_global_do_not() {
        let doc = json!({"_id": "r", "pvt_type": "resource"});
        let proxy = Proxy { zone: "z".into(), ip: "10.0.0.1".into() };
        let (local, _) = compile(
            Scope::Local { account_id: "a".repeat(32) },
            std::slice::from_ref(&doc),
            std::slice::from_ref(&proxy),
            &config(),
        );
        assert_eq!(local.resources()[0].proxies, vec![proxy.clone()]);
        assert!(!local.resources()[0].global);
        let (global, _) = compile(Scope::Global, &[doc], &[proxy], &config());
        assert!(global.resources()[0].proxies.is_empty() && global.resources()[0].global);
    }

    #[test]
    fn required_literal_prefix_of_fallback_rules() {
        let check = |source: &str, expected: Option<&str>| {
            let got = required_literal_prefix(source);
            assert_eq!(got.as_deref(), expected.map(str::as_bytes), "{source}");
        };
        check(r"^\+1(?!900)(\d{10})$", Some("+1"));
        let widened = |source: &str| {
            superset_prefixes(source).map(|set| {
                set.into_iter().map(|it| String::from_utf8(it).unwrap()).collect::<Vec<_>>()
            })
        };
        assert_eq!(widened(r"^\+1(?!900)(415\d{7})$"), Some(vec!["+1415".to_owned()]));
        assert_eq!(widened(r"^12(\d)\1(?<=5)"), Some(vec!["12".to_owned()]));
        assert_eq!(widened(r"5(?=5)"), None);
        check(r"^\+12?(?=3)", Some("+1"));
        check(r"^1+(?=3)", Some("1"));
        check(r"^(\d)\1", Some(""));
        check(r"^a(?=b)|c", None);
        check(r"(?<=1)2", None);
    }

    #[test]
    fn hostile_rules_are_diagnostics_and_the_other_documents_load() {
        let deep = format!("^\\+1{}5{}$", "(".repeat(10_000), ")".repeat(10_000));
        let nested = format!("^\\+1{}5{}$", "(".repeat(1_000), ")".repeat(1_000));
        let docs = vec![
            json!({"_id": "deep", "pvt_type": "resource", "rules": [deep],
                   "cid_rules": [nested]}),
            json!({"_id": "evil", "pvt_type": "resource",
                   "rules": ["^\\+1\\d{10}$", "^\\+(?=\\d)((\\d+)+)+\\2x$"]}),
            json!({"_id": "good", "pvt_type": "resource", "rules": ["^\\+1(\\d{10})$"],
                   "gateways": [{"server": "gw"}]}),
        ];
        let (table, diagnostics) = compile(Scope::Global, &docs, &[], &config());
        let found: Vec<(&str, &str, Option<usize>)> = diagnostics
            .iter()
            .map(|it| (it.doc_id.as_str(), it.field.as_str(), it.index))
            .collect();
        assert_eq!(
            found,
            vec![
                ("deep", "rules", Some(0)),
                ("deep", "cid_rules", Some(0)),
                ("evil", "rules", Some(1))
            ]
        );
        assert!(diagnostics[0].message.contains("bytes long"), "{}", diagnostics[0].message);
        assert!(diagnostics[1].message.contains("levels deep"), "{}", diagnostics[1].message);
        assert!(diagnostics[2].message.starts_with("quarantined"), "{}", diagnostics[2].message);
        assert_eq!(ids(&table), vec!["deep", "evil", "good"]);
        let picked = table.select("+14155550100", None, &[], None);
        let picked: Vec<&str> = picked.iter().map(|it| it.resource.id.as_str()).collect();
        assert_eq!(picked, vec!["evil", "good"]);
    }

    #[test]
    fn budgets_demote_slow_simple_rules_and_quarantine_slow_fallback_rules() {
        let docs = vec![
            json!({"_id": "slow_simple", "pvt_type": "resource",
                   "rules": ["^\\+\\d*\\d*\\d*\\d*\\d*\\d*\\d*x$"]}),
            json!({"_id": "slow_fancy", "pvt_type": "resource",
                   "rules": ["^\\+1\\d{10}$", "^\\+(\\d|\\d\\d|\\d\\d\\d)*(?=x)y"]}),
        ];
        let (table, diagnostics) = compile(Scope::Global, &docs, &[], &config());
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        assert!(table.quarantined().is_empty());
        let long = format!("+{}", "1".repeat(40));
        assert!(table.select(&long, None, &[], None).is_empty());
        // The simple rule ran out of steps and was handed to the linear engine (which agrees
        // there is no match); the fallback rule ran out of its budget and is quarantined.
        let slow_simple = table.resource("slow_simple").unwrap();
        let simple = &table.patterns[slow_simple.rules[0].pattern as usize];
        assert!(simple.demoted.load(std::sync::atomic::Ordering::Relaxed));
        assert!(!simple.is_quarantined());
        let quarantined = table.quarantined();
        assert_eq!(quarantined.len(), 1, "{quarantined:?}");
        assert_eq!(
            (quarantined[0].doc_id.as_str(), quarantined[0].field.as_str(), quarantined[0].index),
            ("slow_fancy", "rules", Some(1))
        );
        // The document's other rule still routes; the quarantined one is not evaluated.
        let picked = table.select("+14155550100", None, &[], None);
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].resource.id, "slow_fancy");
        let x = format!("+{}x", "1".repeat(5));
        assert!(table.select(&x, None, &[], None).iter().all(|it| it.resource.id != "slow_fancy"));
    }

    /// Only a table with a rule on the backtracking engine asks async callers to look up on a
    /// blocking thread; the usual shapes (and rules `regex` reads) never do.
    #[test]
    fn only_backtracking_rules_make_a_table_look_up_off_the_workers() {
        let doc =
            |id: &str, rule: &str| json!({"_id": id, "pvt_type": "resource", "rules": [rule]});
        let usual = vec![doc("a", "^\\+1(415\\d{7})$"), doc("b", "^\\+44\\d+|^\\+33\\d+$")];
        let (table, diagnostics) = compile(Scope::Global, &usual, &[], &config());
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        assert!(!table.may_backtrack());
        let mut fancy = usual.clone();
        fancy.push(doc("c", "^\\+1(?=415)(\\d{10})$"));
        let (table, diagnostics) = compile(Scope::Global, &fancy, &[], &config());
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        assert!(table.may_backtrack());
        assert!(!RouteTable::empty(Scope::Global).may_backtrack());
    }

    #[test]
    fn custom_sip_headers_outbound_merge() {
        let headers = json!({"in": {"a": 1}, "out": {"b": 2, "c": 3}, "c": 4, "d": 5});
        let out = outbound(headers.as_object());
        assert_eq!(Value::Object(out), json!({"c": 3, "d": 5, "b": 2}));
    }

    #[test]
    fn bug_62_gateway_hide_number_uses_number_keys() {
        let doc = json!({"_id": "r", "pvt_type": "resource", "gateways": [
            {"server": "a", "privacy": {"hide_name": true}},
            {"server": "b", "privacy": {"hide_number": true}}]});
        let (table, _) = compile(Scope::Global, &[doc], &[], &config());
        let gws = &table.resources()[0].gateways;
        assert!(gws[0].privacy_hide_name && !gws[0].privacy_hide_number);
        assert!(!gws[1].privacy_hide_name && gws[1].privacy_hide_number);
    }
}

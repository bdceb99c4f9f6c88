//! Rebuilding a scope's table after some of its documents changed: when the rest of the table
//! can be shared, only the changed documents are compiled again and put in their resources'
//! slots (the index, the rule patterns and every other slot are shared with the previous
//! table); otherwise, and always for the first build, a full compile.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::rules::Builder;
use super::{compile_parsed, compile_unique, doc_resources, Built};
use crate::config::Config;
use crate::resource::{ParsedResource, ResourceDoc};
use crate::table::{Hot, Lineage, PatternId, Proxy, Resource, RouteTable, Rule, Scope};
use crate::work::guarded;
use crate::Diagnostic;

/// A table built by [`rebuild`].
#[derive(Debug)]
pub struct Rebuilt {
    /// The table.
    pub table: RouteTable,
    /// Its diagnostics, as [`crate::compile_parsed`] gives them for the same documents.
    pub diagnostics: Vec<Diagnostic>,
    /// Whether only the changed documents were compiled (`false`: a full compile).
    pub incremental: bool,
}

/// More changed documents than this are compiled with the whole table.
const MAX_CHANGED: usize = 64;

/// The table of `scope` for `docs` (at most one per `_id`, in ascending `_id` order, as a
/// reactor keeps them), derived from `previous` (the scope's current table) when it can be.
///
/// The documents are compared with those `previous` was built from by identity (the same
/// `Arc`: a reactor re-parses only what changed). When the config (by identity) and the proxies
/// are the same, few documents changed, and each changed document still yields the same
/// resources with the same rules (an edit of its gateways, weight, flags, name, media...),
/// those resources are compiled again and put in their slots; the new table shares everything
/// else with `previous`. Anything else (a document added, deleted, disabled or enabled, a rule
/// changed, a rule quarantined by a lookup, a new config) is a full compile. Either way the
/// table answers and reports exactly as [`crate::compile_parsed`] of the same documents would.
pub fn rebuild(
    previous: Option<&RouteTable>,
    scope: Scope,
    docs: &Arc<Vec<Arc<ParsedResource>>>,
    proxies: &[Proxy],
    config: &Arc<Config>,
) -> Rebuilt {
    if let Some(updated) = previous.and_then(|prev| update(prev, &scope, docs, proxies, config)) {
        let (table, diagnostics) = updated;
        return Rebuilt { table, diagnostics, incremental: true };
    }
    let (table, diagnostics) = full(scope, docs, proxies, config);
    table.warm();
    Rebuilt { table, diagnostics, incremental: false }
}

/// A full compile that records its inputs (when they are in ascending `_id` order) so that the
/// next rebuild can update it.
fn full(
    scope: Scope,
    docs: &Arc<Vec<Arc<ParsedResource>>>,
    proxies: &[Proxy],
    config: &Arc<Config>,
) -> (RouteTable, Vec<Diagnostic>) {
    let ascending = docs.windows(2).all(|pair| pair[0].id < pair[1].id);
    let named = docs.iter().all(|it| it.doc.as_ref().is_none_or(|doc| doc.id == it.id));
    if !ascending || !named {
        return compile_parsed(scope, docs.iter().map(|it| &**it), proxies, config);
    }
    let typed: Vec<&ResourceDoc> = docs.iter().filter_map(|it| it.doc.as_ref()).collect();
    let (mut table, per_doc) = compile_unique(scope, &typed, proxies, config);
    let mut per_doc = per_doc.into_iter();
    let mut spans = Vec::with_capacity(docs.len() + 1);
    let mut compiled = BTreeMap::new();
    let mut parsed = BTreeSet::new();
    let mut at = 0u32;
    for (pos, doc) in docs.iter().enumerate() {
        spans.push(at);
        if !doc.diagnostics.is_empty() {
            parsed.insert(pos as u32);
        }
        if doc.doc.is_some() {
            let (count, found) = per_doc.next().expect("one entry per typed document");
            at += count;
            if !found.is_empty() {
                compiled.insert(pos as u32, found);
            }
        }
    }
    spans.push(at);
    let lineage = Lineage {
        docs: Arc::clone(docs),
        config: Arc::clone(config),
        proxies: proxies.to_vec(),
        spans: Arc::new(spans),
        compiled: Arc::new(compiled),
        parsed: Arc::new(parsed),
    };
    let diagnostics = lineage.diagnostics();
    table.lineage = Some(Arc::new(lineage));
    (table, diagnostics)
}

/// `previous` with the changed documents compiled again, or `None` when that is not possible.
fn update(
    previous: &RouteTable,
    scope: &Scope,
    docs: &Arc<Vec<Arc<ParsedResource>>>,
    proxies: &[Proxy],
    config: &Arc<Config>,
) -> Option<(RouteTable, Vec<Diagnostic>)> {
    let lineage = previous.lineage.as_ref()?;
    let same_inputs = previous.scope == *scope
        && Arc::ptr_eq(&lineage.config, config)
        && lineage.proxies == proxies
        && lineage.docs.len() == docs.len();
    // A quarantined rule gets a fresh try with a full compile, as after any change.
    if !same_inputs || previous.patterns.any_quarantined.load(Ordering::Relaxed) {
        return None;
    }
    let changed: Vec<usize> = (0..docs.len())
        .filter(|pos| !Arc::ptr_eq(&lineage.docs[*pos], &docs[*pos]))
        .take(MAX_CHANGED + 1)
        .collect();
    if changed.len() > MAX_CHANGED {
        return None;
    }
    let global = scope.is_global();
    let proxies_used: &[Proxy] = if global { &[] } else { proxies };
    let mut table = previous.clone();
    let mut compiled = Arc::clone(&lineage.compiled);
    let mut parsed = Arc::clone(&lineage.parsed);
    for pos in changed {
        let (old, new) = (&lineage.docs[pos], &docs[pos]);
        if old.id != new.id {
            return None;
        }
        let span = lineage.spans[pos] as usize..lineage.spans[pos + 1] as usize;
        let (resources, found) = match (&old.doc, &new.doc) {
            (None, None) => (Vec::new(), Vec::new()),
            (Some(_), Some(doc)) if doc.id == new.id => {
                recompile(&table, span.clone(), doc, global, proxies_used, config)?
            }
            _ => return None,
        };
        for (slot, res) in span.zip(resources) {
            table.hot.set(slot, Hot::of(&res));
            table.resources.set(slot, res);
        }
        let pos = pos as u32;
        if found.is_empty() {
            if compiled.contains_key(&pos) {
                Arc::make_mut(&mut compiled).remove(&pos);
            }
        } else {
            Arc::make_mut(&mut compiled).insert(pos, found);
        }
        if new.diagnostics.is_empty() != old.diagnostics.is_empty() {
            let set = Arc::make_mut(&mut parsed);
            if new.diagnostics.is_empty() {
                set.remove(&pos);
            } else {
                set.insert(pos);
            }
        }
    }
    let lineage = Lineage {
        docs: Arc::clone(docs),
        config: Arc::clone(config),
        proxies: proxies.to_vec(),
        spans: Arc::clone(&lineage.spans),
        compiled,
        parsed,
    };
    let diagnostics = lineage.diagnostics();
    table.lineage = Some(Arc::new(lineage));
    Some((table, diagnostics))
}

/// The resources of one changed document and its diagnostics, when they fill the slots `span`
/// of `table` exactly as before: as many resources, the same classifiers, the same rules (so
/// the index and the patterns stay valid). `None` otherwise.
fn recompile(
    table: &RouteTable,
    span: Range<usize>,
    doc: &ResourceDoc,
    global: bool,
    proxies: &[Proxy],
    config: &Config,
) -> Option<(Vec<Resource>, Vec<Diagnostic>)> {
    let mut known: HashMap<&str, (PatternId, Arc<str>)> = HashMap::new();
    for slot in span.clone() {
        let res = &table.resources[slot];
        for rule in res.rules.iter().chain(&res.cid_rules).chain(&res.rules_test) {
            known.insert(rule.source.as_str(), (rule.pattern, rule.source.shared()));
        }
    }
    let mut builder = Builder::default();
    builder.note_doc(doc, config);
    if !builder.reuse(&known) {
        return None;
    }
    let uses = &builder.doc_slots;
    let (built, found) =
        guarded(|| doc_resources(doc, &mut uses.iter(), global, proxies, config, &builder)).ok()?;
    let resources = match built {
        Built::One(res) => vec![res],
        Built::Many(copies) => copies,
    };
    if resources.len() != span.len() {
        return None;
    }
    let same = |new: &[Rule], old: &[Rule]| {
        new.len() == old.len()
            && new
                .iter()
                .zip(old)
                .all(|(a, b)| a.pattern == b.pattern && a.doc_index == b.doc_index)
    };
    for (new, slot) in resources.iter().zip(span) {
        let old = &table.resources[slot];
        let kept = new.classifier == old.classifier
            && same(&new.rules, &old.rules)
            && same(&new.cid_rules, &old.cid_rules)
            && same(&new.rules_test, &old.rules_test);
        if !kept {
            return None;
        }
    }
    Some((resources, found))
}

//! Rebuilding a scope's table after some of its documents changed: when the rest of the table
//! can be shared, only the changed documents are compiled again — into their resources' slots
//! when they still yield the same resources with the same rules, otherwise into appended slots
//! (their old slots become tombstones, see [`delta`]) — and everything else (the index, the
//! rule patterns, every other slot) is shared with the previous table; otherwise, and always
//! for the first build, a full compile.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::rules::Builder;
use super::{compile_parsed, compile_unique, delta, doc_resources, Built};
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
/// are the same and at most [`MAX_CHANGED`] documents changed, only those are compiled: a
/// changed document that still yields the same resources with the same rules (an edit of its
/// gateways, weight, flags, name, media...) is put in its slots; a document added, deleted,
/// disabled, enabled or given other rules has its old slots (if any) turned into tombstones and
/// its new resources appended. The new table shares everything else with `previous`. A full
/// compile instead: the first build, a new config or proxies, more changed documents, a rule
/// quarantined by a lookup (it gets a fresh try), and compaction — once the appended slots
/// plus tombstones since the last full compile pass 1,024. Either
/// way the table answers and reports exactly as [`crate::compile_parsed`] of the same
/// documents would.
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
    let mut starts = Vec::with_capacity(docs.len() + 1);
    let mut compiled = BTreeMap::new();
    let mut parsed = BTreeSet::new();
    let mut at = 0u32;
    for doc in docs.iter() {
        starts.push(at);
        if !doc.diagnostics.is_empty() {
            parsed.insert(doc.id.clone());
        }
        if doc.doc.is_some() {
            let (count, found) = per_doc.next().expect("one entry per typed document");
            at += count;
            if !found.is_empty() {
                compiled.insert(doc.id.clone(), found);
            }
        }
    }
    starts.push(at);
    let lineage = Lineage {
        docs: Arc::clone(docs),
        config: Arc::clone(config),
        proxies: proxies.to_vec(),
        starts: Arc::new(starts),
        compiled: Arc::new(compiled),
        parsed: Arc::new(parsed),
    };
    let diagnostics = lineage.diagnostics();
    table.lineage = Some(Arc::new(lineage));
    (table, diagnostics)
}

/// One document that differs between the inputs of the previous table and the new ones: its
/// position in each list (`None`: it is not in that one).
struct Change {
    old: Option<usize>,
    new: Option<usize>,
}

/// The documents that differ between `old` and `new` (both ascending `_id`), in `_id` order, or
/// `None` when there are more than [`MAX_CHANGED`] or `new` is not in ascending `_id` order
/// around them (the documents shared by identity keep their order).
fn diff(old: &[Arc<ParsedResource>], new: &[Arc<ParsedResource>]) -> Option<Vec<Change>> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        let change = match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => {
                (i, j) = (i + 1, j + 1);
                continue;
            }
            (Some(a), Some(b)) => match a.id.cmp(&b.id) {
                std::cmp::Ordering::Equal => Change { old: Some(i), new: Some(j) },
                std::cmp::Ordering::Less => Change { old: Some(i), new: None },
                std::cmp::Ordering::Greater => Change { old: None, new: Some(j) },
            },
            (Some(_), None) => Change { old: Some(i), new: None },
            (None, _) => Change { old: None, new: Some(j) },
        };
        i += usize::from(change.old.is_some());
        j += usize::from(change.new.is_some());
        if let Some(pos) = change.new {
            let ordered = (pos == 0 || new[pos - 1].id < new[pos].id)
                && new.get(pos + 1).is_none_or(|next| new[pos].id < next.id);
            let named = new[pos].doc.as_ref().is_none_or(|doc| doc.id == new[pos].id);
            if !ordered || !named {
                return None;
            }
        }
        out.push(change);
        if out.len() > MAX_CHANGED {
            return None;
        }
    }
    Some(out)
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
        && lineage.proxies == proxies;
    // A quarantined rule gets a fresh try with a full compile, as after any change.
    if !same_inputs || previous.patterns.any_quarantined.load(Ordering::Relaxed) {
        return None;
    }
    let changes = diff(&lineage.docs, docs)?;
    let global = scope.is_global();
    let proxies_used: &[Proxy] = if global { &[] } else { proxies };
    let mut table = previous.clone();
    let mut compiled = Arc::clone(&lineage.compiled);
    let mut parsed = Arc::clone(&lineage.parsed);
    let mut steps = Vec::new();
    let mut patterns = Vec::new();
    let mut next_pattern = previous.n_patterns() as PatternId;
    for change in changes {
        let old = change.old.map(|pos| &lineage.docs[pos]);
        let new = change.new.map(|pos| &docs[pos]);
        // The same resources with the same rules: compiled again into their own slots.
        if let (Some(pos), Some(old), Some(new)) = (change.old, old, new) {
            let span = delta::doc_slots(previous, &lineage.starts, pos);
            let kept = match (&old.doc, &new.doc) {
                (None, None) => Some((Vec::new(), Vec::new())),
                (Some(_), Some(doc)) => {
                    recompile(&table, span.clone(), doc, global, proxies_used, config)
                }
                _ => None,
            };
            if let Some((resources, found)) = kept {
                for (slot, res) in span.zip(resources) {
                    table.hot.set(slot, Hot::of(&res));
                    table.resources.set(slot, res);
                }
                note(&mut compiled, &mut parsed, new, found);
                continue;
            }
        }
        // Anything else: the old slots die, the new resources are appended.
        let fresh = match new.and_then(|it| it.doc.as_ref()) {
            Some(doc) => delta::compile_fresh(doc, next_pattern, global, proxies_used, config),
            None => delta::Fresh::default(),
        };
        next_pattern += fresh.patterns.len() as PatternId;
        patterns.extend(fresh.patterns);
        match new {
            Some(new) => note(&mut compiled, &mut parsed, new, fresh.diagnostics),
            None => {
                let id = old.map(|it| it.id.as_str()).unwrap_or_default();
                forget(&mut compiled, &mut parsed, id);
            }
        }
        steps.push(delta::Step {
            old: change.old,
            new: change.new.map(|pos| (pos, fresh.resources)),
        });
    }
    let starts = if steps.is_empty() {
        Arc::clone(&lineage.starts)
    } else {
        Arc::new(delta::apply(&mut table, &lineage.starts, docs.len(), steps, patterns)?)
    };
    let lineage = Lineage {
        docs: Arc::clone(docs),
        config: Arc::clone(config),
        proxies: proxies.to_vec(),
        starts,
        compiled,
        parsed,
    };
    let diagnostics = lineage.diagnostics();
    table.lineage = Some(Arc::new(lineage));
    Some((table, diagnostics))
}

/// Records the diagnostics of document `doc`: `found` from compiling it, and whether parsing it
/// raised any.
fn note(
    compiled: &mut Arc<BTreeMap<String, Vec<Diagnostic>>>,
    parsed: &mut Arc<BTreeSet<String>>,
    doc: &ParsedResource,
    found: Vec<Diagnostic>,
) {
    if found.is_empty() {
        if compiled.contains_key(&doc.id) {
            Arc::make_mut(compiled).remove(&doc.id);
        }
    } else {
        Arc::make_mut(compiled).insert(doc.id.clone(), found);
    }
    if doc.diagnostics.is_empty() {
        if parsed.contains(&doc.id) {
            Arc::make_mut(parsed).remove(&doc.id);
        }
    } else if !parsed.contains(&doc.id) {
        Arc::make_mut(parsed).insert(doc.id.clone());
    }
}

/// Forgets the diagnostics of the removed document `id`.
fn forget(
    compiled: &mut Arc<BTreeMap<String, Vec<Diagnostic>>>,
    parsed: &mut Arc<BTreeSet<String>>,
    id: &str,
) {
    if compiled.contains_key(id) {
        Arc::make_mut(compiled).remove(id);
    }
    if parsed.contains(id) {
        Arc::make_mut(parsed).remove(id);
    }
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
        let res = table.resources.slot(slot);
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
        let old = table.resources.slot(slot);
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

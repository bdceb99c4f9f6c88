//! The structural part of an incremental rebuild ([`crate::rebuild`]): documents added, removed,
//! disabled, enabled, or changed so that they yield other resources or rules. Their old slots
//! become tombstones; their new resources are compiled on their own and appended (new slots,
//! their own rule patterns, a small index of their own, view-order keys between their
//! neighbours'); the rest of the table — the shared index, patterns and every other slot — is
//! the previous table's. The table's view (its live slots in view order) and the documents'
//! positions in it are rebuilt by block copies.

use std::ops::Range;
use std::sync::Arc;

use super::rules::{Builder, IndexKeys};
use super::{doc_or_skipped, Built};
use crate::config::Config;
use crate::resource::ResourceDoc;
use crate::simple::PrefixSet;
use crate::table::delta::{base_key, key_after, Delta, DeltaPattern};
use crate::table::{Hot, PatternId, PrefixTrie, Proxy, Resource, RouteTable};
use crate::Diagnostic;

/// Past this many appended slots plus tombstones since the last full compile, a rebuild
/// compiles the whole table again (compaction): lookups then no longer pass over dead index
/// entries, and the appended resources' index (rebuilt on every structural change) stays small.
pub(super) const COMPACT_AFTER: usize = 1024;

/// One document compiled on its own for appended slots.
#[derive(Default)]
pub(super) struct Fresh {
    /// Its resources, their rules' pattern ids already the table's.
    pub(super) resources: Vec<Resource>,
    /// Its diagnostics.
    pub(super) diagnostics: Vec<Diagnostic>,
    /// The patterns its rules use, new to the table.
    pub(super) patterns: Vec<DeltaPattern>,
}

/// Compiles `doc` as [`super::compile_unique`] compiles each document, numbering its distinct
/// rule patterns from `first`; the patterns that need an engine get it now (as a full compile's
/// `warm` does).
pub(super) fn compile_fresh(
    doc: &ResourceDoc,
    first: PatternId,
    global: bool,
    proxies: &[Proxy],
    config: &Config,
) -> Fresh {
    let mut builder = Builder::default();
    builder.note_doc(doc, config);
    builder.analyze_all();
    let (built, diagnostics) =
        doc_or_skipped(doc, &builder.doc_slots, global, proxies, config, &builder);
    let mut resources = match built {
        Built::One(res) => vec![res],
        Built::Many(copies) => copies,
    };
    for res in &mut resources {
        for rule in res.rules.iter_mut().chain(&mut res.cid_rules).chain(&mut res.rules_test) {
            rule.pattern += first;
        }
    }
    let patterns = builder
        .patterns
        .into_iter()
        .zip(builder.keys)
        .map(|(pattern, keys)| {
            let keys = match keys {
                IndexKeys::Unindexed => PrefixSet::from_slices([&b""[..]]),
                IndexKeys::Prefixes => pattern.prefixes.clone(),
                IndexKeys::Own(set) => set,
            };
            if pattern.simple.is_none() {
                pattern.get();
            }
            DeltaPattern { pattern, keys }
        })
        .collect();
    Fresh { resources, diagnostics, patterns }
}

/// One document whose slots change, in document order: its old position (its slots die) and
/// its new position with the resources to append (none when it was removed).
pub(super) struct Step {
    pub(super) old: Option<usize>,
    pub(super) new: Option<(usize, Vec<Resource>)>,
}

/// The slots of the document at `pos` of the table's inputs (`starts`: each document's first
/// position in the view; a document's slots are consecutive).
pub(super) fn doc_slots(table: &RouteTable, starts: &[u32], pos: usize) -> Range<usize> {
    let (from, to) = (starts[pos] as usize, starts[pos + 1] as usize);
    match table.resources.view.as_deref() {
        None => from..to,
        Some(_) if from == to => 0..0,
        Some(view) => view[from] as usize..view[from] as usize + (to - from),
    }
}

/// Applies `steps` to `table` (the previous table's copy, whose inputs had their documents at
/// `starts`; `n_docs` documents now): tombstones, appended slots and patterns, the view, the
/// view-order keys and the appended resources' index. The documents' new `starts`, or `None`
/// when a full compile is due (the delta past [`COMPACT_AFTER`], or no view-order key left
/// between two neighbours).
pub(super) fn apply(
    table: &mut RouteTable,
    starts: &[u32],
    n_docs: usize,
    steps: Vec<Step>,
    patterns: Vec<DeltaPattern>,
) -> Option<Vec<u32>> {
    let old = table.delta.clone();
    let old_live = table.resources.len();
    let base_slots = old.as_ref().map_or(table.resources.slots.len(), |it| it.base_slots as usize);
    let key = |slot: usize| old.as_ref().map_or_else(|| base_key(slot), |it| it.order_key(slot));
    let mut dead = old.as_ref().map_or(0, |it| it.dead);
    // Tombstones first, then the new slots (in document order).
    let mut appended: Vec<Range<u32>> = Vec::with_capacity(steps.len());
    for step in &steps {
        if let Some(pos) = step.old {
            for slot in doc_slots(table, starts, pos) {
                let hot = table.hot[slot];
                if !hot.dead {
                    table.hot.set(slot, hot.tombstone());
                    dead += 1;
                }
            }
        }
    }
    let mut steps = steps;
    for step in &mut steps {
        let from = table.resources.slots.len() as u32;
        for res in step.new.as_mut().map(|(_, it)| std::mem::take(it)).unwrap_or_default() {
            if let Some(class) = &res.classifier {
                let slot = table.resources.slots.len() as u32;
                Arc::make_mut(&mut table.by_classifier)
                    .entry(class.clone())
                    .or_default()
                    .push(slot);
            }
            table.hot.push(Hot::of(&res));
            table.resources.slots.push(res);
        }
        appended.push(from..table.resources.slots.len() as u32);
    }
    // The view: unchanged documents' slots copied by blocks, the changed ones' new slots.
    let old_view = table.resources.view.clone();
    let mut view: Vec<u32> =
        Vec::with_capacity(old_live + appended.iter().map(|it| it.len()).sum::<usize>());
    let mut new_starts: Vec<u32> = Vec::with_capacity(n_docs + 1);
    let copy = |view: &mut Vec<u32>, new_starts: &mut Vec<u32>, docs: Range<usize>| {
        let (from, to) = (starts[docs.start], starts[docs.end]);
        let at = view.len() as u32;
        new_starts.extend(starts[docs].iter().map(|it| it - from + at));
        match old_view.as_deref() {
            Some(old_view) => view.extend_from_slice(&old_view[from as usize..to as usize]),
            None => view.extend(from..to),
        }
    };
    // Runs of consecutive new slots in the view.
    let mut runs: Vec<Range<usize>> = Vec::new();
    let (mut i, mut j) = (0usize, 0usize);
    for (step, slots) in steps.iter().zip(appended) {
        let (old_at, new_at) = match (step.old, &step.new) {
            (Some(o), Some((n, _))) => (o, *n),
            (Some(o), None) => (o, j + (o - i)),
            (None, Some((n, _))) => (i + (n - j), *n),
            (None, None) => continue,
        };
        copy(&mut view, &mut new_starts, i..old_at);
        (i, j) = (old_at, new_at);
        if step.old.is_some() {
            i += 1;
        }
        if step.new.is_some() {
            new_starts.push(view.len() as u32);
            let at = view.len();
            view.extend(slots);
            if view.len() > at {
                match runs.last_mut() {
                    Some(run) if run.end == at => run.end = view.len(),
                    _ => runs.push(at..view.len()),
                }
            }
            j += 1;
        }
    }
    copy(&mut view, &mut new_starts, i..starts.len() - 1);
    new_starts.push(view.len() as u32);
    debug_assert_eq!(new_starts.len(), n_docs + 1, "one start per document");
    // View-order keys of the new slots: spread between their neighbours' keys.
    let slots_now = table.resources.slots.len();
    let mut order = old.as_ref().map_or_else(Vec::new, |it| it.order.clone());
    order.resize(slots_now - base_slots, 0);
    for run in runs {
        let low = if run.start > 0 { key(view[run.start - 1] as usize) } else { 0 };
        let high = match view.get(run.end) {
            Some(next) => key(*next as usize),
            None => key_after(low),
        };
        let step = (high - low) / (run.len() as u128 + 1);
        if step == 0 {
            return None;
        }
        for (nth, pos) in run.enumerate() {
            order[view[pos] as usize - base_slots] = low + step * (nth as u128 + 1);
        }
    }
    let mut all = old.as_ref().map_or_else(Vec::new, |it| it.patterns.clone());
    table.backtracking |= patterns.iter().any(|it| it.pattern.needs_backtracking());
    all.extend(patterns.into_iter().map(Arc::new));
    let delta = Delta {
        base_slots: base_slots as u32,
        patterns: all,
        order,
        index: PrefixTrie::default(),
        dead,
    };
    if delta.weight() > COMPACT_AFTER {
        return None;
    }
    let delta = Delta { index: appended_index(table, &delta), ..delta };
    table.resources.view = Some(Arc::from(view));
    table.delta = Some(Arc::new(delta));
    Some(new_starts)
}

/// The index of the live appended slots' rules.
fn appended_index(table: &RouteTable, delta: &Delta) -> PrefixTrie {
    let base = table.patterns.len();
    let mut index = PrefixTrie::default();
    for slot in delta.base_slots as usize..table.resources.slots.len() {
        if table.hot[slot].dead {
            continue;
        }
        for (pos, rule) in table.resources.slots[slot].rules.iter().enumerate() {
            let keys = &delta.patterns[rule.pattern as usize - base].keys;
            for key in keys.iter() {
                index.insert(key, slot as u32, pos as u32, rule.pattern);
            }
        }
    }
    index.finish();
    index
}

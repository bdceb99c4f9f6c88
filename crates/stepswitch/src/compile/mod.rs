//! Compilation of resource documents into a [`RouteTable`] (`stepswitch_resources`' compilation).
//!
//! One call compiles one scope (the global `offnet` table or one account's table), so the
//! reactor can rebuild only the table a change touches. Compilation never fails as a whole:
//! a document or a rule that cannot be used is reported as a [`Diagnostic`] and left out.
//!
//! [`rules`] interns and analyses the rule regexes (index keys, matcher choice); [`gateway`]
//! turns one document's values into a compiled resource and its gateways.

mod delta;
mod gateway;
mod rebuild;
mod rules;

pub use rebuild::{rebuild, Rebuilt};

use std::collections::HashMap;
use std::sync::Arc;

use rayon::prelude::*;
use serde_json::Value;

use crate::chunks::Chunks;
use crate::config::Config;
use crate::resource::{diag, ParsedResource, ResourceDoc};
use crate::table::{
    Hot, Patterns, PrefixTrie, Proxy, Resource, Resources, RouteTable, RulePattern, Scope,
};
use crate::work::{guarded, map_ordered, PARALLEL_MIN};
use crate::Diagnostic;

use gateway::base_resource;
use rules::{Builder, IndexKeys, Slots};

/// Compiles raw resource documents (as read from db `offnet` or an account db) into the table
/// of `scope`.
///
/// Documents that are not live resources (`pvt_type` other than `resource`, deleted) are
/// ignored; the input order does not matter (rows are sorted by `_id` as the view does, the `resources/listing_by_id` view);
/// of two documents with the same `_id` the later wins and the clash is reported. `proxies` are
/// the account's dedicated IPs for a local scope (`stepswitch_resources`' local-resource fields; already reduced to the first one when
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
    // the `resources/listing_by_id` view: view rows in `_id` order (byte order = ICU collation for Kazoo's ids).
    docs.sort_by(|a, b| a.id.cmp(&b.id));
    let mut deduped: Vec<&ResourceDoc> = Vec::with_capacity(docs.len());
    for doc in docs {
        if deduped.last().is_some_and(|prev| prev.id == doc.id) {
            diagnostics.push(diag(&doc.id, "_id", None, "duplicate _id; the later document wins"));
            deduped.pop();
        }
        deduped.push(doc);
    }
    let (table, per_doc) = compile_unique(scope, &deduped, proxies, config);
    diagnostics.extend(per_doc.into_iter().flat_map(|(_, found)| found));
    (table, diagnostics)
}

/// Compiles documents already in view order (ascending, distinct `_id`s): the table, and per
/// document how many resources it yielded (they are consecutive, in document order) and the
/// diagnostics it raised.
pub(crate) fn compile_unique(
    scope: Scope,
    deduped: &[&ResourceDoc],
    proxies: &[Proxy],
    config: &Config,
) -> (RouteTable, Vec<(u32, Vec<Diagnostic>)>) {
    let global = scope.is_global();
    let proxies: Vec<Proxy> = if global { Vec::new() } else { proxies.to_vec() };
    // Every distinct rule text, in first-use order (so pattern ids never depend on
    // threads), analysed in parallel for large tables.
    let mut builder = Builder::default();
    let mut doc_starts = Vec::with_capacity(deduped.len() + 1);
    for &doc in deduped {
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
    let built = map_ordered(&jobs, |(doc, slots)| {
        doc_or_skipped(doc, slots, global, &proxies, config, &builder)
    });
    let mut resources = Vec::with_capacity(deduped.len());
    let mut per_doc = Vec::with_capacity(deduped.len());
    for (doc_resources, doc_diagnostics) in built {
        let before = resources.len();
        match doc_resources {
            Built::One(res) => resources.push(res),
            Built::Many(mut copies) => resources.append(&mut copies),
        }
        per_doc.push(((resources.len() - before) as u32, doc_diagnostics));
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
            // `stepswitch_resources:filter_resource_by_rules/5`: never matches, so it needs no index entry.
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
    let hot = Chunks::from_vec(resources.iter().map(Hot::of).collect());
    let backtracking = patterns.iter().any(RulePattern::needs_backtracking);
    let table = RouteTable {
        scope,
        resources: Resources::new(Chunks::from_vec(resources)),
        patterns: Arc::new(Patterns::new(patterns)),
        index: Arc::new(index),
        by_classifier: Arc::new(by_classifier),
        hot,
        backtracking,
        lineage: None,
        delta: None,
    };
    (table, per_doc)
}

/// [`doc_resources`] guarded: one document's failure is that document's diagnostic, never the
/// table's (the bounds on rules make a panic here a defect; this is the last line of defence).
fn doc_or_skipped(
    doc: &ResourceDoc,
    slots: &[u32],
    global: bool,
    proxies: &[Proxy],
    config: &Config,
    builder: &Builder,
) -> (Built, Vec<Diagnostic>) {
    guarded(|| doc_resources(doc, &mut slots.iter(), global, proxies, config, builder))
        .unwrap_or_else(|message| {
            let skipped = diag(&doc.id, "", None, &format!("{message}; document skipped"));
            (Built::Many(Vec::new()), vec![skipped])
        })
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
    // `stepswitch_resources`' disabled documents: disabled documents are skipped.
    if !doc.enabled {
        return (Built::Many(resources), diagnostics);
    }
    match &doc.classifiers {
        None => {
            let res = base_resource(doc, slots, global, proxies, config, builder, &mut diagnostics);
            return (Built::One(res), diagnostics);
        }
        Some(classifiers) => {
            // `stepswitch_resources:create_classifier_resource/4`: one copy per classifier known to the system; the doc itself is not
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

/// The resources of one document: the document itself, or its classifier copies (`stepswitch_resources:create_classifier_resource/4`).
/// Inline, so the usual single resource costs no allocation of its own on the way.
#[allow(clippy::large_enum_variant)]
enum Built {
    One(Resource),
    Many(Vec<Resource>),
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::gateway::outbound;
    use super::rules::{required_literal_prefix, superset_prefixes};
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
        let [tollfree, emergency, did] = &table.resources().iter().collect::<Vec<_>>()[..] else {
            panic!("three copies")
        };
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
        let simple = table.pattern(slow_simple.rules[0].pattern);
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

    /// A lookup leaves the async workers only for the numbers a backtracking rule is offered
    /// for: its own prefix, an unindexed rule (offered for every number), or the `cid_rules`
    /// of a resource offered.
    #[test]
    fn only_the_numbers_a_backtracking_rule_is_offered_for_look_up_off_the_workers() {
        let doc =
            |id: &str, rules: Value| json!({"_id": id, "pvt_type": "resource", "rules": rules});
        let mut docs = vec![
            doc("a", json!(["^\\+1(415\\d{7})$"])),
            doc("b", json!(["^\\+1(?!900)(212\\d{7})$"])),
        ];
        let (table, diagnostics) = compile(Scope::Global, &docs, &[], &config());
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        assert!(table.may_backtrack_on("+12125550100"));
        assert!(!table.may_backtrack_on("+14155550100"));
        assert!(!table.may_backtrack_on("+442071234567"));
        let mut cid = doc("c", json!(["^\\+44(\\d+)$"]));
        cid["cid_rules"] = json!(["^(?!0)\\d+$"]);
        docs.push(cid);
        let (table, diagnostics) = compile(Scope::Global, &docs, &[], &config());
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        assert!(table.may_backtrack_on("+442071234567"));
        assert!(!table.may_backtrack_on("+14155550100"));
        docs.push(doc("d", json!(["(?<!9)99$"])));
        let (table, diagnostics) = compile(Scope::Global, &docs, &[], &config());
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        assert!(table.may_backtrack_on("+14155550100"));
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

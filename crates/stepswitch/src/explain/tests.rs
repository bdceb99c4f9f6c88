use std::sync::Arc;

use serde_json::{json, Value};

use super::*;
use crate::endpoint::tests::tables_and_diagnostics;
use crate::{AccountTree, Scope};

const NUMBER: &str = "+14155550100";

fn docs() -> Vec<Value> {
    let res = |id: &str, extra: Value| {
        let mut doc = json!({"_id": id, "pvt_type": "resource", "rules": ["^\\+1(\\d{10})$"],
                             "gateways": [{"server": format!("{id}.example.com")}]});
        for (key, value) in extra.as_object().unwrap() {
            doc[key] = value.clone();
        }
        doc
    };
    vec![
        res("cheap", json!({"weight_cost": 1, "rules": ["^\\+1(415\\d{7})$", "^\\+1(\\d{10})$"]})),
        res("dear", json!({"weight_cost": 9})),
        res("off", json!({"enabled": false})),
        res("fax", json!({"flags": ["fax"], "require_flags": true})),
        res("uk", json!({"rules": ["^\\+44(\\d+)$"]})),
        res("cid", json!({"cid_rules": ["^\\+1212"]})),
        res("broken", json!({"rules": ["^\\+1(415", "^\\+1(\\d{10})$"], "weight_cost": 5})),
        res("norules", json!({"rules": []})),
        json!({"_id": "notes", "pvt_type": "note"}),
    ]
}

/// The global table of `docs` (some of which may not compile).
fn tables(docs: &[Value]) -> Tables {
    tables_and_diagnostics(Scope::Global, docs, &[]).0
}

fn find<'e>(explanation: &'e Explanation, id: &str) -> &'e ResourceExplanation {
    explanation.resources.iter().find(|it| it.id == id).unwrap_or_else(|| panic!("{id}"))
}

#[test]
fn every_resource_is_taken_or_skipped_with_its_reason() {
    let docs = docs();
    let tables = tables(&docs);
    let request = RouteRequest::new(NUMBER);
    let explanation = explain(&tables, &request, &docs);
    assert_eq!(explanation.number, NUMBER);
    assert_eq!(explanation.table, "global");
    assert_eq!(explanation.bucket, None);
    // Every resource document is listed once (the note is not a resource).
    let mut ids: Vec<&str> = explanation.resources.iter().map(|it| it.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["broken", "cheap", "cid", "dear", "fax", "norules", "off", "uk"]);

    let cheap = find(&explanation, "cheap");
    // `stepswitch_resources`' rule compilation: the last rule is evaluated first and decides; the first matches too.
    assert_eq!(
        cheap.verdict,
        Verdict::Taken {
            rule: "^\\+1(\\d{10})$".into(),
            rule_index: 1,
            capture: "4155550100".into(),
            endpoints: 1
        }
    );
    assert_eq!(cheap.rules[0].outcome, RuleOutcome::Matched { capture: "4155550100".into() });
    assert_eq!(cheap.rules[1].outcome, RuleOutcome::AlsoMatched);
    assert_eq!(find(&explanation, "off").verdict, Verdict::Skipped(SkipReason::Disabled));
    assert_eq!(find(&explanation, "fax").verdict, Verdict::Skipped(SkipReason::FlagsRequired));
    assert_eq!(find(&explanation, "uk").verdict, Verdict::Skipped(SkipReason::NoRuleMatched));
    assert_eq!(find(&explanation, "uk").rules[0].outcome, RuleOutcome::NoMatch);
    assert_eq!(
        find(&explanation, "cid").verdict,
        Verdict::Skipped(SkipReason::CallerId { caller_id: None })
    );
    assert_eq!(find(&explanation, "norules").verdict, Verdict::Skipped(SkipReason::NoRules));
    let broken = find(&explanation, "broken");
    assert!(matches!(broken.verdict, Verdict::Taken { rule_index: 1, .. }), "{broken:?}");
    assert!(broken.rules.iter().any(|r| r.index == 0 && r.outcome == RuleOutcome::Invalid));

    // The final order is route()'s, by weight.
    let order: Vec<(&str, &str)> =
        explanation.order.iter().map(|e| (e.resource_id.as_str(), e.route.as_str())).collect();
    let answer = route(&tables, &request);
    let routed: Vec<String> = answer.endpoints.iter().map(|ep| ep.dial_string()).collect();
    assert_eq!(order.iter().map(|it| it.1).collect::<Vec<_>>(), routed);
    assert_eq!(
        order,
        [
            ("cheap", "sip:4155550100@cheap.example.com"),
            ("broken", "sip:4155550100@broken.example.com"),
            ("dear", "sip:4155550100@dear.example.com")
        ]
    );
    // Taken resources are exactly the answer's.
    let taken: Vec<&str> = explanation
        .resources
        .iter()
        .filter(|it| matches!(it.verdict, Verdict::Taken { .. }))
        .map(|it| it.id.as_str())
        .collect();
    assert_eq!(taken, ["broken", "cheap", "dear"]);
}

#[test]
fn flags_and_caller_id_and_missing_flags() {
    let docs = docs();
    let tables = tables(&docs);
    let mut request = RouteRequest::new(NUMBER);
    request.flags = vec!["fax".into()];
    request.outbound_caller_id_number = Some("+12125550100".into());
    let explanation = explain(&tables, &request, &docs);
    assert!(matches!(find(&explanation, "fax").verdict, Verdict::Taken { .. }));
    assert!(
        matches!(find(&explanation, "cid").verdict, Verdict::Skipped(SkipReason::FlagsMissing { ref missing }) if missing == &["fax"])
    );
    request.flags.clear();
    let explanation = explain(&tables, &request, &docs);
    assert!(matches!(find(&explanation, "cid").verdict, Verdict::Taken { .. }));
}

#[test]
fn classifier_buckets_and_disabled_copies() {
    let docs = vec![
        json!({"_id": "plain", "pvt_type": "resource", "rules": ["^\\+1(\\d{10})$"],
               "gateways": [{"server": "p"}]}),
        json!({"_id": "classy", "pvt_type": "resource", "gateways": [{"server": "c"}],
               "classifiers": {"did_us": {"enabled": false}, "tollfree_us": {}}}),
        json!({"_id": "empty", "pvt_type": "resource", "classifiers": {}}),
    ];
    let tables = tables(&docs);
    let explanation = explain(&tables, &RouteRequest::new(NUMBER), &docs);
    assert_eq!(explanation.classification.as_deref(), Some("did_us"));
    assert_eq!(explanation.bucket.as_deref(), Some("did_us"));
    assert_eq!(
        find(&explanation, "plain").verdict,
        Verdict::Skipped(SkipReason::ClassifierBucket { classifier: None })
    );
    assert_eq!(
        find(&explanation, "classy-did_us").verdict,
        Verdict::Skipped(SkipReason::ClassifierDisabled)
    );
    assert_eq!(
        find(&explanation, "classy-tollfree_us").verdict,
        Verdict::Skipped(SkipReason::ClassifierBucket { classifier: Some("tollfree_us".into()) })
    );
    assert_eq!(
        find(&explanation, "empty").verdict,
        Verdict::Skipped(SkipReason::NoClassifierCopies)
    );
    assert!(explanation.order.is_empty());
    assert!(explanation.to_text().contains("final order: none"));
}

#[test]
fn hunt_account_outside_the_hierarchy_looks_at_no_table() {
    let tables = tables(&docs());
    let mut request = RouteRequest::new(NUMBER);
    request.account_id = Some("child".into());
    request.hunt_account_id = Some("stranger".into());
    let explanation = explain(&tables, &request, &[]);
    assert_eq!(explanation.table, "stranger");
    assert_eq!(
        explanation.table_skipped,
        Some(TableSkip::Hierarchy {
            hunt_account_id: "stranger".into(),
            account_id: Some("child".into())
        })
    );
    let mut tree = AccountTree::new();
    tree.insert("child", vec!["stranger".into()]);
    let mut tables = tables;
    tables.accounts = Arc::new(tree);
    let explanation = explain(&tables, &request, &[]);
    assert_eq!(
        explanation.table_skipped,
        Some(TableSkip::NoLocalTable { hunt_account_id: "stranger".into() })
    );
}

#[test]
fn the_json_form_is_tagged_and_the_text_form_names_every_resource() {
    let docs = docs();
    let explanation = explain(&tables(&docs), &RouteRequest::new(NUMBER), &docs);
    let value = serde_json::to_value(&explanation).unwrap();
    let off = value["resources"].as_array().unwrap().iter().find(|r| r["id"] == "off").unwrap();
    assert_eq!(off["verdict"], json!({"verdict": "skipped", "reason": "disabled"}));
    let cheap = value["resources"].as_array().unwrap().iter().find(|r| r["id"] == "cheap").unwrap();
    assert_eq!(cheap["verdict"]["verdict"], "taken");
    assert_eq!(cheap["rules"][0]["outcome"], "matched");
    assert_eq!(cheap["rules"][0]["capture"], "4155550100");
    let text = explanation.to_text();
    for id in ["cheap", "dear", "off", "fax", "uk", "cid", "broken", "norules"] {
        assert!(text.contains(id), "{id} missing from\n{text}");
    }
    assert!(text.contains("skipped off (weight -): disabled"), "{text}");
    assert!(text.contains("1. cheap (weight 1) sip:4155550100@cheap.example.com"), "{text}");
}

/// A rule whose backtracking engine ran out of its budget on a lookup is reported as
/// quarantined (not as a plain miss), and the document's other rule still decides.
#[test]
fn a_quarantined_rule_is_named_as_such() {
    let docs = vec![json!({"_id": "slow", "pvt_type": "resource",
        "rules": ["^\\+1(\\d{10})$", "^\\+(\\d|\\d\\d|\\d\\d\\d)*(?=x)y"],
        "gateways": [{"server": "slow.example.com"}]})];
    let tables = tables(&docs);
    let long = format!("+{}", "1".repeat(40));
    // This lookup blows the second rule's budget: it is quarantined from now on.
    let first = explain(&tables, &RouteRequest::new(&long), &docs);
    let outcome = |explanation: &Explanation, index: usize| {
        let slow = find(explanation, "slow");
        slow.rules.iter().find(|rule| rule.index == index).unwrap().outcome.clone()
    };
    assert_eq!(outcome(&first, 1), RuleOutcome::Quarantined);
    let again = explain(&tables, &RouteRequest::new(NUMBER), &docs);
    assert_eq!(outcome(&again, 1), RuleOutcome::Quarantined);
    assert!(matches!(outcome(&again, 0), RuleOutcome::Matched { .. }));
    assert!(matches!(find(&again, "slow").verdict, Verdict::Taken { rule_index: 0, .. }));
}

//! Hostile resource documents and rule strings through parse, compile and route: no input may
//! panic (or overflow a stack), every rule routing cannot use is a diagnostic naming its
//! document, field and position, and the simple matcher agrees with the regex engine.
//!
//! Case counts come from `testkit::fuzz_config` (`SWITCHBOARD_FUZZ_CASES` for a long run:
//! `SWITCHBOARD_FUZZ_CASES=1000000 cargo test --release -p stepswitch --test fuzz`).

use std::sync::Arc;

use e164::Pattern;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use stepswitch::{compile, route, select_capture, Config, RouteRequest, Scope, Tables};
use testkit::fuzz_config;

/// Rule fragments: the pieces carrier rules are made of, the PCRE-only features, and the
/// characters that break parsers.
const TOKENS: &[&str] = &[
    "^",
    "$",
    "\\+",
    "1",
    "5",
    "0",
    "\\d",
    "[0-9]",
    "[2-9]",
    "[^5]",
    "[]5]",
    ".",
    "(",
    ")",
    "(?:",
    "(?=",
    "(?!",
    "(?<=",
    "(?<!",
    "(?>",
    "\\1",
    "\\2",
    "+",
    "*",
    "?",
    "+?",
    "*?",
    "{2}",
    "{1,3}",
    "{2,}",
    "{0,64}",
    "{65}",
    "|",
    "a",
    "\\w",
    "\\s",
    "\\",
    "[",
    "]",
    "{",
    "}",
    "(?i)",
    "ä",
    "\u{FFFD}",
    "\u{10FFFF}",
    "\u{0}",
    "\u{202E}",
    "e\u{301}",
];

/// Rules known to be hostile: deep, huge, catastrophic, slow.
fn hostile_rule() -> impl Strategy<Value = String> {
    prop_oneof![
        (0usize..300).prop_map(|n| format!("^\\+1{}5{}$", "(".repeat(n), ")".repeat(n))),
        Just(format!("^\\+1{}5{}$", "(".repeat(10_000), ")".repeat(10_000))),
        (0usize..300).prop_map(|n| format!("^{}", "[".repeat(n))),
        (0usize..2000).prop_map(|n| format!("^{{{}5{}", "(".repeat(n), ")".repeat(n))),
        (0usize..200).prop_map(|n| format!("^1{}", "{1}".repeat(n))),
        (4000usize..4200).prop_map(|n| format!("^{}", "1".repeat(n))),
        Just("^\\+(?=\\d)((\\d+)+)+\\2x$".to_owned()),
        Just("^\\+(\\d|\\d\\d|\\d\\d\\d)*(?=x)y".to_owned()),
        Just("^\\+\\d*\\d*\\d*\\d*\\d*\\d*\\d*x$".to_owned()),
        Just("^(1|11)+$".to_owned()),
        Just("^(\\d{1000}){1000}$".to_owned()),
        Just("^((a*)*)*(?<=b)\\1$".to_owned()),
    ]
}

/// Any rule: a good one, a hostile one, or a random string of fragments.
fn rule() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec(prop::sample::select(TOKENS), 0..24).prop_map(|it| it.concat()),
        1 => hostile_rule(),
        1 => prop::sample::select(&[
            "^\\+1(\\d{10})$", "^\\+?1?([2-9]\\d{9})$", "^011(\\d{5,})$|^00(\\d{5,})$",
            "^\\+1(?!900)(\\d{10})$", "^(\\d)\\1", "^\\+44(\\d{9,10})$",
        ][..]).prop_map(str::to_owned),
    ]
}

/// Any JSON value: nested, odd strings, and now and then a huge array.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|it| json!(it)),
        any::<f64>().prop_map(|it| json!(it)),
        "\\PC{0,12}".prop_map(Value::String),
        rule().prop_map(Value::String),
    ];
    let nested = leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    });
    prop_oneof![
        40 => nested,
        1 => (500usize..3000).prop_map(|n| Value::Array(vec![json!("^1"); n])),
    ]
}

/// A value for a field: usually of the right kind, sometimes anything at all.
fn field(good: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    prop_oneof![3 => good, 1 => any_json()].boxed()
}

fn rules_value() -> BoxedStrategy<Value> {
    prop::collection::vec(rule().prop_map(Value::String), 0..4).prop_map(Value::Array).boxed()
}

fn gateways_value() -> BoxedStrategy<Value> {
    let gateway = (
        field("[a-z]{1,8}\\.example\\.com".prop_map(Value::String).boxed()),
        field(any::<bool>().prop_map(Value::Bool).boxed()),
        field("[0-9+]{0,3}".prop_map(Value::String).boxed()),
    )
        .prop_map(|(server, enabled, prefix)| {
            json!({"server": server, "enabled": enabled, "prefix": prefix})
        });
    prop::collection::vec(gateway, 0..3).prop_map(Value::Array).boxed()
}

fn classifiers_value() -> BoxedStrategy<Value> {
    let classifier = (field(rules_value()), field(rule().prop_map(Value::String).boxed()))
        .prop_map(|(_, regex)| json!({"regex": regex, "weight_cost": 2}));
    prop::collection::btree_map(
        prop::sample::select(&["did_us", "tollfree_us", "emergency", "unknown"][..]),
        classifier,
        0..3,
    )
    .prop_map(|map| Value::Object(map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
    .boxed()
}

/// A resource document with every field either well typed or arbitrary; `_id` is set by the
/// caller (unique per batch).
fn resource_doc() -> impl Strategy<Value = Map<String, Value>> {
    (
        field("\\PC{0,16}".prop_map(Value::String).boxed()),
        field(any::<bool>().prop_map(Value::Bool).boxed()),
        field((-10i64..300).prop_map(|it| json!(it)).boxed()),
        field(rules_value()),
        field(rules_value()),
        field(rules_value()),
        field(gateways_value()),
        field(prop::collection::vec("[a-z]{0,4}", 0..3).prop_map(|it| json!(it)).boxed()),
        prop::option::of(field(classifiers_value())),
        prop::collection::btree_map("[a-z_]{1,16}", any_json(), 0..3),
    )
        .prop_map(
            |(
                name,
                enabled,
                weight,
                rules,
                cid_rules,
                rules_test,
                gateways,
                flags,
                classes,
                rest,
            )| {
                let mut doc: Map<String, Value> = rest.into_iter().collect();
                doc.insert("name".into(), name);
                doc.insert("enabled".into(), enabled);
                doc.insert("weight_cost".into(), weight);
                doc.insert("rules".into(), rules);
                doc.insert("cid_rules".into(), cid_rules);
                doc.insert("rules_test".into(), rules_test);
                doc.insert("gateways".into(), gateways);
                doc.insert("flags".into(), flags);
                if let Some(classes) = classes {
                    doc.insert("classifiers".into(), classes);
                }
                doc.insert("pvt_type".into(), json!("resource"));
                doc
            },
        )
}

/// Numbers to route: plausible ones, long digit runs (what slow rules choke on), odd text.
fn number() -> impl Strategy<Value = String> {
    prop_oneof!["\\+1[2-9][0-9]{9}", "\\+[0-9]{11,40}x?", "[0-9+ab]{0,20}", "\\PC{0,20}",]
}

// Default case counts: 1,000 + 1,500 + 2,500 = 5,000 cases per `cargo test`.
proptest! {
    #![proptest_config(fuzz_config(1_000))]

    /// Documents of any shape compile and route without a panic; every string rule of a live
    /// document is either in the table or a diagnostic naming the document, field and index.
    #[test]
    fn fuzz_resource_documents(
        docs in prop::collection::vec(resource_doc(), 1..4),
        numbers in prop::collection::vec(number(), 1..4),
    ) {
        let docs: Vec<Value> = docs
            .into_iter()
            .enumerate()
            .map(|(idx, mut doc)| {
                doc.insert("_id".into(), json!(format!("doc{idx}")));
                Value::Object(doc)
            })
            .collect();
        let config = Config::kazoo_defaults();
        let local = Scope::Local { account_id: "a".repeat(32) };
        for scope in [if numbers.len() % 2 == 0 { Scope::Global } else { local }] {
            let (table, diagnostics) = compile(scope, &docs, &[], &config);
            for doc in &docs {
                let id = doc["_id"].as_str().unwrap_or_default();
                let live = doc.get("enabled") == Some(&Value::Bool(true))
                    && doc.get("classifiers").is_none();
                let Some(resource) = table.resource(id).filter(|_| live) else { continue };
                for field in ["rules", "cid_rules", "rules_test"] {
                    let Some(Value::Array(items)) = doc.get(field) else { continue };
                    if !items.iter().all(Value::is_string) {
                        continue;
                    }
                    let compiled = match field {
                        "rules" => &resource.rules,
                        "cid_rules" => &resource.cid_rules,
                        _ => &resource.rules_test,
                    };
                    for idx in 0..items.len() {
                        let in_table = compiled.iter().any(|rule| rule.doc_index == idx);
                        let reported = diagnostics.iter().any(|d| {
                            d.doc_id == id && d.field == field && d.index == Some(idx)
                        });
                        prop_assert!(
                            in_table != reported,
                            "{id}.{field}[{idx}] in table: {in_table}, reported: {reported}"
                        );
                    }
                }
            }
            let mut tables = Tables::new(Arc::new(config.clone()));
            tables.set_table(Arc::new(table));
            for number in &numbers {
                let answer = route(&tables, &RouteRequest::new(number.as_str()));
                for endpoint in &answer.endpoints {
                    let _ = endpoint.to_json();
                }
            }
            let _ = tables.global.quarantined();
        }
    }

}

proptest! {
    #![proptest_config(fuzz_config(1_500))]

    /// Any rule string through the pattern compiler and a route table: no panic, the table
    /// takes exactly the rules the pattern compiler accepts (any other is one diagnostic on
    /// `rules[0]`), and an accepted rule answers any text.
    #[test]
    fn fuzz_rule_strings(source in rule(), texts in prop::collection::vec(number(), 1..4)) {
        let compiled = Pattern::new(&source);
        if let Ok(pattern) = &compiled {
            for text in &texts {
                let _ = pattern.try_captures(text);
            }
        }
        let doc = json!({"_id": "r", "pvt_type": "resource", "rules": [source],
                         "gateways": [{"server": "gw"}]});
        let config = Config::kazoo_defaults();
        let (table, diagnostics) = compile(Scope::Global, &[doc], &[], &config);
        let res = table.resource("r").expect("the document loads");
        prop_assert_eq!(res.rules.len(), usize::from(compiled.is_ok()), "{:?}", compiled.err());
        if compiled.is_err() {
            prop_assert_eq!(diagnostics.len(), 1);
            prop_assert_eq!((diagnostics[0].field.as_str(), diagnostics[0].index), ("rules", Some(0)));
        }
        for text in &texts {
            let _ = table.select(text, None, &[], None);
        }
    }

}

proptest! {
    #![proptest_config(fuzz_config(2_500))]

    /// Where the simple matcher takes a rule, its answer (what a table selects) equals the
    /// regex engine's, including after it runs out of steps and hands the rule over.
    #[test]
    fn fuzz_simple_matcher_agrees_with_regex(
        source in prop::collection::vec(prop::sample::select(&[
            "^", "\\+", "1", "2", "\\d", "[0-4]", "[^5]", ".", "(", ")", "(?:", "|", "?", "*",
            "+", "??", "*?", "{2}", "{1,3}", "{2,}", "$",
        ][..]), 1..14).prop_map(|it| it.concat()),
        texts in prop::collection::vec("[0-9+]{0,20}", 1..6),
    ) {
        let Ok(reference) = Pattern::new(&source) else { return Ok(()) };
        let doc = json!({"_id": "r", "pvt_type": "resource", "rules": [source.clone()]});
        let (table, _) = compile(Scope::Global, &[doc], &[], &Config::kazoo_defaults());
        for text in &texts {
            let expected = reference.captures(text).map(|list| select_capture(&list));
            let got = table.select(text, None, &[], None).first().map(|it| it.span.clone());
            prop_assert_eq!(got, expected, "{} on {:?}", source, text);
        }
    }
}
